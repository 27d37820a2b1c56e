"""The repository's files of record and what the package ships are the same files.

``config/``, ``systemd/`` and ``deploy/{prometheus,grafana,kubernetes}`` are where operators and
reviewers look; ``saynad/data/`` links to them so that the package carries them. A file
added at the top without its link would silently not ship: these tests catch it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from saynad.shipped import example_names, read_shipped, shipped_files

ROOT = Path(__file__).resolve().parents[2]

# Top-level directory → where its files appear among the shipped files.
SHIPPED_DIRECTORIES = {
    "config/examples": "examples",
    "systemd": "systemd",
    "deploy/prometheus": "prometheus",
    "deploy/grafana": "grafana",
    "deploy/kubernetes": "kubernetes",
}


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.mark.parametrize("top", sorted(SHIPPED_DIRECTORIES))
def test_every_file_of_record_ships_with_the_same_bytes(top: str) -> None:
    files = _files(ROOT / top)
    assert files, f"{top} is empty"
    shipped = set(shipped_files())
    for path in files:
        name = f"{SHIPPED_DIRECTORIES[top]}/{path.relative_to(ROOT / top).as_posix()}"
        assert name in shipped, f"{path.relative_to(ROOT)} does not ship (link it from saynad/data)"
        assert read_shipped(name) == path.read_bytes()


def test_the_embedded_default_is_config_saynad_yaml() -> None:
    assert "demo" in example_names()
    assert read_shipped("examples/demo.yaml") == (ROOT / "config" / "saynad.yaml").read_bytes()


def test_nothing_ships_that_has_no_file_of_record() -> None:
    of_record = {
        f"{prefix}/{p.relative_to(ROOT / top).as_posix()}"
        for top, prefix in SHIPPED_DIRECTORIES.items()
        for p in _files(ROOT / top)
    }
    of_record |= {"examples/demo.yaml", "demo-caller.wav"}
    assert set(shipped_files()) - of_record == set()
