#!/usr/bin/env bash
# Install saynad on this host as a systemd service, from a built wheel.
#
#   make install                           # builds the wheel, then runs this (as root)
#   deploy/install.sh dist/saynad-*.whl    # the same by hand
#
# What it does (docs/operations.md, "Install", explains each step):
#   1. a virtual environment in /opt/saynad with exactly the runtime lock
#      (requirements/run.txt, hashes required) and the wheel, nothing resolved here;
#   2. /etc/saynad (0755, root) and, when there is none yet, /etc/saynad/saynad.yaml
#      (0644) from a shipped example (--example, default: demo, which needs nothing else);
#   3. /etc/credstore (0700, root): systemd's credential store, where the secrets go as
#      /etc/credstore/saynad.NAME (the docs create them; this script creates none);
#   4. the units in /etc/systemd/system (0644): saynad.service, and saynad@.service with
#      saynad.target for several shards on one host; then `systemctl daemon-reload`.
# Running it again upgrades saynad and the units and keeps the configuration and secrets.
# It never starts a service: `systemctl enable --now saynad` does, once you are ready
# (or, sharded, `systemctl enable --now saynad@{0..N-1}.service saynad.target`).
#
# Options:
#   --root DIR      install under DIR instead of / (a staging tree, for inspection and
#                   tests; the virtual environment only works at the path it was made)
#   --prefix DIR    the virtual environment (default: /opt/saynad)
#   --example NAME  the configuration to start with (`saynad config example` lists them)
#   --python PATH   the Python (>= 3.11) that makes the virtual environment (default: python3)
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

ROOT=/
PREFIX=/opt/saynad
EXAMPLE=demo
PYTHON=python3
WHEEL=
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --example) EXAMPLE=${2:?--example needs a name}; shift 2 ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "install.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$WHEEL" ] || usage; WHEEL=$1; shift ;;
    esac
done
[ -n "$WHEEL" ] || usage
[ -f "$WHEEL" ] || { echo "install.sh: no wheel at $WHEEL (make install builds one)" >&2; exit 1; }
case "$PREFIX" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
LOCK="$HERE/../requirements/run.txt"
[ -f "$LOCK" ] || { echo "install.sh: the runtime lock $LOCK is missing" >&2; exit 1; }
ROOT=${ROOT%/}
VENV="$ROOT$PREFIX"
SAYNAD="$VENV/bin/saynad"
step() { printf 'saynad install: %s\n' "$*"; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install.sh: $PYTHON is older than Python 3.11" >&2; exit 1; }

# 1. The virtual environment: the lock (hashes checked, no resolution), then saynad.
if [ ! -x "$VENV/bin/python" ]; then
    step "virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
step "runtime dependencies from requirements/run.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r "$LOCK"
step "saynad from $(basename "$WHEEL")"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall "$WHEEL"

# 2. The configuration directory and a first configuration (never overwritten).
install -d -m 0755 "$ROOT/etc/saynad"
if [ ! -e "$ROOT/etc/saynad/saynad.yaml" ]; then
    step "/etc/saynad/saynad.yaml from the $EXAMPLE example"
    "$SAYNAD" config example "$EXAMPLE" > "$ROOT/etc/saynad/saynad.yaml.new"
    chmod 0644 "$ROOT/etc/saynad/saynad.yaml.new"
    mv "$ROOT/etc/saynad/saynad.yaml.new" "$ROOT/etc/saynad/saynad.yaml"
else
    step "/etc/saynad/saynad.yaml exists: kept"
fi

# 3. systemd's credential store: root-only.
install -d -m 0700 "$ROOT/etc/credstore"

# 4. The units, pointing at this virtual environment.
install -d -m 0755 "$ROOT/etc/systemd/system"
for unit in saynad.service saynad@.service saynad.target; do
    step "unit /etc/systemd/system/$unit"
    "$SAYNAD" files "systemd/$unit" | sed "s#/opt/saynad/#$PREFIX/#g" \
        > "$ROOT/etc/systemd/system/$unit.new"
    chmod 0644 "$ROOT/etc/systemd/system/$unit.new"
    mv "$ROOT/etc/systemd/system/$unit.new" "$ROOT/etc/systemd/system/$unit"
done
if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
fi

step "installed $("$SAYNAD" --version)"
cat <<NEXT
Next:
  - put each secret your configuration names as \${credential:NAME} into
    /etc/credstore/saynad.NAME (mode 0600; docs/operations.md lists them);
  - edit /etc/saynad/saynad.yaml (\`$SAYNAD config example\` lists the examples);
  - systemctl enable --now saynad && systemctl status saynad
    (several shards on this host: docs/operations.md, "Several shards on one host")
NEXT
