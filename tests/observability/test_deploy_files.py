"""The shipped systemd unit and Grafana dashboard."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from saynad.observability.metrics import Metrics
from tests.daemon.fixtures import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "saynad.service"
DASHBOARD = ROOT / "deploy" / "grafana" / "saynad.json"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_declares_what_operations_rely_on() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["78"]
    assert unit["WatchdogSec"] == ["30s"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["StateDirectory"] == ["saynad"]
    assert any(v.startswith("@system-service") for v in unit["SystemCallFilter"])
    assert {v.split(":", 1)[0] for v in unit["LoadCredential"]} >= {
        "sayna-api-key",
        "webhook-secret",
        "control-token",
    }
    # The stop timeout leaves room for the default drain (10 s) and the HTTP grace (5 s).
    assert int(unit["TimeoutStopSec"][0].rstrip("s")) > 10 + 5


def _installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's saynad (verify checks it)."""
    saynad = Path(sys.executable).with_name("saynad")
    text = UNIT.read_text().replace("/opt/saynad/bin/saynad", str(saynad))
    copy = tmp_path / "saynad.service"
    copy.write_text(text)
    return copy


async def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    unit = _installed_copy(tmp_path)
    result = await trio.run_process(
        [tool, "verify", str(unit)], capture_stdout=True, capture_stderr=True, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert "saynad.service" not in output, output  # no warnings about our unit


async def test_systemd_analyze_security_rates_the_unit_2_or_better(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    unit = _installed_copy(tmp_path)
    result = await trio.run_process(
        [tool, "security", "--offline=yes", str(unit)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    match = re.search(r"Overall exposure level for saynad\.service: (\d+\.\d+)", output)
    assert match is not None, output
    assert float(match.group(1)) <= 2.0, output


def test_dashboard_queries_only_metrics_of_the_catalog() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "saynad"
    registry = CollectorRegistry()
    Metrics(registry)
    known: set[str] = set()
    for family in registry.collect():
        known.add(family.name)
        known.update(sample.name for sample in family.samples)
        if family.type == "counter":
            known.add(family.name + "_total")
        if family.type == "histogram":
            known.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    used = {name for expr in exprs for name in re.findall(r"\bsaynad_[a-z_]+", expr)}
    assert used, "no saynad metric used"
    assert used <= known, used - known
    # Every panel has a unique id and sits on the grid.
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all({"x", "y", "w", "h"} <= set(panel["gridPos"]) for panel in dashboard["panels"])
