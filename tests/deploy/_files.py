"""What the shipped unit, the examples and docs/operations.md say about credentials.

One reading of each, shared by the consistency test and the install tests: the
credential files the docs create (``/etc/credstore/saynad.NAME``), the names the unit
hands over (``LoadCredential=NAME:saynad.NAME``) and the ``${credential:NAME}``
references of every example.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from saynad.shipped import example_file, example_names, read_shipped

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
UNIT_NAME = "systemd/saynad.service"
TEMPLATE_NAME = "systemd/saynad@.service"

SHARDED_EXAMPLES = frozenset({"sharded-host"})
"""Examples written for a sharded fleet (``sharding``, ``http.port_per_shard``,
``http.webhooks``)."""


def loadable_examples() -> list[str]:
    """Every shipped example: each one loads with the credentials the docs create."""
    return list(example_names())


CREDSTORE = "/etc/credstore"

_REFERENCE = re.compile(r"\$\{credential:([^}]*)\}")
# A shell line of the docs that writes a credential file: `… > /etc/credstore/NAME`.
_DOCS_WRITE = re.compile(r">\s*" + re.escape(CREDSTORE) + r"/([\w.-]+)")


def unit_settings(text: str | None = None) -> dict[str, list[str]]:
    """``KEY=value`` lines of the unit (every value, in order), comments skipped."""
    unit = read_shipped(UNIT_NAME).decode() if text is None else text
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_credentials() -> dict[str, str]:
    """Credential name in ``$CREDENTIALS_DIRECTORY`` → where systemd reads it from."""
    loaded: dict[str, str] = {}
    for value in unit_settings().get("LoadCredential", []):
        name, _, source = value.partition(":")
        loaded[name] = source or name
    return loaded


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _strings(key) + _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def example_credentials(name: str) -> set[str]:
    """The ``${credential:NAME}`` references in the example's values (not its comments)."""
    document = yaml.safe_load(read_shipped(example_file(name)))
    return {match for text in _strings(document) for match in _REFERENCE.findall(text)}


def all_example_credentials() -> dict[str, set[str]]:
    return {name: example_credentials(name) for name in example_names()}


def docs_credential_files() -> list[str]:
    """The files docs/operations.md tells the operator to create in /etc/credstore."""
    return _DOCS_WRITE.findall(OPERATIONS.read_text())


def write_docs_credentials(directory: Path) -> dict[str, str]:
    """Lay out ``directory`` as systemd would hand it over after the docs' steps.

    Exactly the files the docs create, each under the name the unit delivers it as;
    returns name → value (distinct values, to check that none leaks into output).
    """
    store_to_name = {source: name for name, source in unit_credentials().items()}
    written: dict[str, str] = {}
    for stored in docs_credential_files():
        name = store_to_name.get(stored)
        assert name is not None, f"the docs create {stored}, which the unit never loads"
        value = f"secret-value-for-{name}-0123456789"
        (directory / name).write_text(value + "\n")
        written[name] = value
    return written


CHECK_TIMEOUT_S = 120
"""A hang guard for ``saynad check`` (it takes about a second)."""


def credential_names(document: Any) -> set[str]:
    """The ``${credential:NAME}`` names in a parsed configuration's values."""
    return set(_REFERENCE.findall(json.dumps(document)))


def saynad_check(
    config_text: str, directory: Path, *, withhold: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``saynad check`` on ``config_text``, in a process of its own.

    Every credential the text names but ``withhold`` is laid out under
    ``directory/credentials`` (as systemd or a Kubernetes Secret would); nothing else of
    this environment leaks in.
    """
    credentials = directory / "credentials"
    credentials.mkdir()
    for name in credential_names(yaml.safe_load(config_text)) - {withhold}:
        (credentials / name).write_text(f"{name}-value-0123456789abcdef\n")
    path = directory / "saynad.yaml"
    path.write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "saynad", "check", "--config", str(path)],
        env={"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(credentials)},
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )
