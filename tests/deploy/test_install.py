"""saynad installed as a user installs it: a wheel, a fresh virtual environment outside
the repository, the documented install step (``deploy/install.sh``), then the installed
``saynad`` on its own: ``check`` and a short ``run`` on the embedded default, ``check``
on every shipped example with exactly the credential files docs/operations.md creates.

Nothing here imports saynad from the checkout: the wheel is built from a copy of the
package's files, and every command runs the staged environment's own ``saynad`` from a
directory outside the repository, with no ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from saynad._version import __version__
from saynad.config import DEFAULT_CONFIG_PATH
from tests.deploy._files import ROOT, loadable_examples, unit_settings, write_docs_credentials
from tests.support.processes import daemon_process

pytestmark = pytest.mark.slow

# Hang guards only: a pip install from the lock and a daemon start take seconds.
COMMAND_TIMEOUT_S = 300
DAEMON_TIMEOUT_S = 60
SYSTEM_CONFIG = os.path.exists(DEFAULT_CONFIG_PATH)


@dataclass(frozen=True)
class Installed:
    root: Path  # the staging root: ROOT/etc/saynad, ROOT/opt/saynad, ...
    wheel: Path
    work: Path  # an empty directory outside the repository, the commands' cwd

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "saynad"

    @property
    def saynad(self) -> Path:
        return self.venv / "bin" / "saynad"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an installed command: nothing points at the checkout."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"PYTHONPATH", "VIRTUAL_ENV", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET"}
        }
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        return {**env, **extra}

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.saynad), *args],
            cwd=self.work,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )


def _build_wheel(out: Path) -> Path:
    """The wheel, built from a clean copy of what the package is made of."""
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "saynad", source / "saynad", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        cwd=out,
        check=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    (wheel,) = out.glob("saynad-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    assert not base.resolve().is_relative_to(ROOT)
    wheel = _build_wheel(base)
    root = base / "root"
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "install.sh"), "--root", str(root), str(wheel)],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    work = base / "work"
    work.mkdir()
    return Installed(root=root, wheel=wheel, work=work)


def test_the_wheel_carries_the_package_its_data_and_nothing_of_the_tests(
    installed: Installed,
) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "saynad/data/demo-caller.wav" in names
    for shipped in (
        "examples/demo.yaml",
        "examples/livekit-phone-agent.yaml",
        "examples/websocket-only.yaml",
        "examples/call-center.yaml",
        "systemd/saynad.service",
        "systemd/saynad@.service",
        "systemd/saynad.target",
        "examples/sharded-host.yaml",
        "kubernetes/base/kustomization.yaml",
        "prometheus/alerts.yml",
        "grafana/saynad.json",
    ):
        assert f"saynad/data/{shipped}" in names
    assert not [name for name in names if name.startswith(("tests/", "saynad/testing/"))]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_saynad_runs_from_the_installed_environment(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import saynad; print(saynad.__file__)"],
        cwd=installed.work,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout
    version = installed.run("--version")
    assert (version.returncode, version.stdout) == (0, f"saynad {__version__}\n")


def test_check_without_a_config_says_which_file_it_uses(installed: Installed) -> None:
    result = installed.run("check")
    if SYSTEM_CONFIG:  # a host with saynad installed for real
        assert f"using {DEFAULT_CONFIG_PATH} (the system configuration)" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    demo = installed.venv.glob("lib/python3*/site-packages/saynad/data/examples/demo.yaml")
    (path,) = demo
    assert result.stderr == (
        f"saynad: using {path} (the embedded demo: {DEFAULT_CONFIG_PATH} does not exist)\n"
    )
    assert result.stdout.startswith(f"{path}: configuration OK")
    assert "embedded emulator" in result.stdout


@pytest.mark.skipif(
    SYSTEM_CONFIG, reason=f"{DEFAULT_CONFIG_PATH} exists: a bare `saynad run` would run it"
)
async def test_run_on_the_embedded_default_stops_cleanly_on_sigterm(installed: Installed) -> None:
    # The demo listens on 127.0.0.1:9464, a fixed port that another daemon on the machine
    # (a `make run`, another test run) may hold: the installed copy listens on a port
    # the system picks for the length of this test, the rest of the demo unchanged.
    (demo,) = installed.venv.glob("lib/python*/site-packages/saynad/data/examples/demo.yaml")
    shipped = demo.read_text()
    assert shipped.count('listen: "127.0.0.1:9464"') == 1
    demo.write_text(shipped.replace('listen: "127.0.0.1:9464"', 'listen: "127.0.0.1:0"'))
    try:
        await _run_the_embedded_default(installed)
    finally:
        demo.write_text(shipped)


async def _run_the_embedded_default(installed: Installed) -> None:
    async with daemon_process(
        None, command=[str(installed.saynad), "run"], env=installed.env(), cwd=installed.work
    ) as daemon:
        running = await daemon.event("saynad running", within_s=DAEMON_TIMEOUT_S)
        assert Path(str(running["config"])).is_relative_to(installed.venv), running
        assert str(running["config"]).endswith("saynad/data/examples/demo.yaml")
        daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(DAEMON_TIMEOUT_S):
            code = await daemon.process.wait()
        await daemon.event("drained", within_s=DAEMON_TIMEOUT_S)
    assert code == 0
    events = [line.get("event") for line in daemon.lines]
    assert "embedded emulator started" in events
    assert not [line for line in daemon.lines if line.get("level") == "error"]


@pytest.mark.parametrize("name", loadable_examples())
def test_every_example_checks_with_the_credentials_the_docs_create(
    installed: Installed, name: str, tmp_path: Path
) -> None:
    example = installed.run("config", "example", name)
    assert example.returncode == 0, example.stderr
    config = tmp_path / "saynad.yaml"  # a copy, far from the package: builtin: paths hold
    config.write_text(example.stdout)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secrets = write_docs_credentials(credentials)
    result = installed.run("check", "--config", str(config), CREDENTIALS_DIRECTORY=str(credentials))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: configuration OK")
    for value in secrets.values():
        assert value not in result.stdout + result.stderr


def test_the_install_lays_out_etc_as_the_unit_and_the_docs_expect(installed: Installed) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    etc = installed.root / "etc"
    unit = etc / "systemd" / "system" / "saynad.service"
    settings = unit_settings(unit.read_text())
    assert mode(etc / "saynad") == int(settings["ConfigurationDirectoryMode"][0], 8) == 0o755
    assert mode(etc / "saynad" / "saynad.yaml") == 0o644
    assert mode(etc / "credstore") == 0o700
    assert mode(unit) == 0o644
    assert not list((etc / "credstore").iterdir())  # the docs create the secrets
    assert settings["ExecStart"] == ["/opt/saynad/bin/saynad run --config /etc/saynad/saynad.yaml"]
    # The shards' template and their target, beside it, as shipped.
    for name in ("saynad@.service", "saynad.target"):
        installed_unit = etc / "systemd" / "system" / name
        assert mode(installed_unit) == 0o644
        assert installed_unit.read_text() == installed.run("files", f"systemd/{name}").stdout
    demo = installed.run("config", "example", "demo")
    assert (etc / "saynad" / "saynad.yaml").read_text() == demo.stdout


def test_installing_again_upgrades_and_keeps_the_configuration(installed: Installed) -> None:
    config = installed.root / "etc" / "saynad" / "saynad.yaml"
    edited = config.read_text() + "# edited by the operator\n"
    config.write_text(edited)
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "deploy" / "install.sh"),
            "--root",
            str(installed.root),
            str(installed.wheel),
        ],
        cwd=installed.work,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/etc/saynad/saynad.yaml exists: kept" in result.stdout
    assert config.read_text() == edited
    assert installed.run("check", "--config", str(config)).returncode == 0
