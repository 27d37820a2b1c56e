"""The shipped systemd units and Grafana dashboard (from the package: ``saynad files``)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import trio
import yaml
from prometheus_client import CollectorRegistry

from saynad.app import STOP_GRACE_S
from saynad.config import Defaults, load_config
from saynad.observability.metrics import Metrics
from saynad.shipped import example_file, shipped_path
from tests.deploy._files import (
    TEMPLATE_NAME,
    loadable_examples,
    unit_settings,
    write_docs_credentials,
)
from tests.support.processes import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = shipped_path("systemd/saynad.service")
TEMPLATE = shipped_path(TEMPLATE_NAME)
TARGET = shipped_path("systemd/saynad.target")
DASHBOARD = shipped_path("grafana/saynad.json")
# The unit a test names → its file: one shard of the template (instance 0) stands for all.
UNITS = {"saynad.service": UNIT, "saynad@0.service": TEMPLATE}


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
    # /etc/saynad holds no secret: the directory mode the install step gives it.
    assert unit["ConfigurationDirectoryMode"] == ["0755"]
    # Credentials by name from systemd's credential store, never by absolute path: a
    # missing one is then skipped instead of failing the start (243/CREDENTIALS).
    for value in unit["LoadCredential"]:
        name, _, source = value.partition(":")
        assert source == f"saynad.{name}", value


def test_the_stop_timeout_outlasts_every_drain_the_examples_configure(tmp_path: Path) -> None:
    write_docs_credentials(tmp_path)
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    unit = unit_settings()
    timeout_s = int(unit["TimeoutStopSec"][0].removesuffix("s"))
    drains = [Defaults().drain_timeout_s]  # a configuration that sets none
    for name in loadable_examples():
        config = load_config(shipped_path(example_file(name)), env=env)
        drains.append(config.defaults.drain_timeout_s)
        drains.extend(spec.policy.drain_timeout_s for spec in config.sessions)
    assert max(drains) == 30  # livekit-phone-agent: a call in progress says goodbye
    # saynad exits within the drain plus its stop grace on every path (the stop guard
    # enforces it): systemd's own timeout must never be the one that fires.
    assert timeout_s > max(drains) + STOP_GRACE_S, (timeout_s, drains)
    # The shards' template stops the same way.
    assert unit_settings(TEMPLATE.read_text())["TimeoutStopSec"] == unit["TimeoutStopSec"]


def _installed_copy(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this environment's saynad (verify checks it).

    Returns the directory holding them, as systemd would find them in /etc/systemd/system.
    """
    saynad = Path(sys.executable).with_name("saynad")
    tmp_path.mkdir(exist_ok=True)
    for source in (UNIT, TEMPLATE, TARGET):
        text = source.read_text().replace("/opt/saynad/bin/saynad", str(saynad))
        (tmp_path / source.name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("unit", [*UNITS, "saynad.target"])
async def test_systemd_analyze_verify_passes(tmp_path: Path, unit: str) -> None:
    tool = require_tool("systemd-analyze")
    directory = _installed_copy(tmp_path)
    # An instance is verified from its template in the same directory.
    result = await trio.run_process(
        [tool, "verify", str(directory / unit)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert "saynad" not in output, output  # no warnings about our units


@pytest.mark.parametrize("unit", sorted(UNITS))
async def test_systemd_analyze_security_rates_the_unit_2_or_better(
    tmp_path: Path, unit: str
) -> None:
    tool = require_tool("systemd-analyze")
    directory = _installed_copy(tmp_path)
    result = await trio.run_process(
        [tool, "security", "--offline=yes", str(directory / unit)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", output)
    assert match is not None, output
    assert float(match.group(1)) <= 2.0, output


# What the shards' template may set differently from saynad.service, and how.
TEMPLATE_ONLY = {
    "Description": ["saynad shard %i - supervisor of Sayna voice sessions"],
    "PartOf": ["saynad.target"],
    "User": ["saynad"],
    "WantedBy": ["saynad.target"],
}


def test_the_template_is_the_unit_plus_the_shard_and_the_target() -> None:
    single = unit_settings()
    template = unit_settings(TEMPLATE.read_text())
    # The shard index is the instance; the count comes from the configuration file.
    assert template["Environment"] == [*single["Environment"], "SAYNAD_SHARD=%i"]
    assert template["ExecStart"] == single["ExecStart"]
    for key, values in TEMPLATE_ONLY.items():
        assert template[key] == values, key
    # Everything else, hardening and credentials included, is the single unit's own.
    shared = set(single) - {"Environment", "Description", "WantedBy"}
    assert set(template) - set(TEMPLATE_ONLY) - {"Environment"} == shared
    for key in shared:
        assert template[key] == single[key], key


def test_the_target_starts_the_shards_and_never_beside_the_single_unit() -> None:
    target = unit_settings(TARGET.read_text())
    assert target["WantedBy"] == ["multi-user.target"]
    # The single unit runs the whole fleet from the same file: never both at once.
    assert target["Conflicts"] == ["saynad.service"]


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


RUNBOOKS = "https://github.com/saynad/saynad/blob/main/docs/operations.md#"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_links_its_runbook_in_the_operations_guide() -> None:
    rules = yaml.safe_load(shipped_path("prometheus/alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 11
    anchors = _anchors((ROOT / "docs" / "operations.md").read_text())
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url == RUNBOOKS + alert["alert"].lower(), url
        assert url.removeprefix(RUNBOOKS) in anchors, f"no runbook section for {alert['alert']}"


def test_the_transcript_sink_alert_watches_the_sink_error_counter() -> None:
    rules = yaml.safe_load(shipped_path("prometheus/alerts.yml").read_text())
    (alert,) = [
        rule
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "SaynadTranscriptSinkErrors"
    ]
    assert "rate(saynad_transcript_sink_errors_total[5m])) > 0" in alert["expr"]
    # The operations guide recommends exactly this alert.
    assert (
        "rate(saynad_transcript_sink_errors_total[5m]) > 0"
        in (ROOT / "docs" / "operations.md").read_text()
    )


async def test_the_target_pulls_in_every_enabled_shard(tmp_path: Path) -> None:
    # `systemctl enable saynad@{0..2}.service` links each instance into the target's
    # .wants directory; verifying the target loads each of them from the template.
    tool = require_tool("systemd-analyze")

    async def verify(name: str, canary: str) -> str:
        directory = _installed_copy(tmp_path / name)
        template = directory / TEMPLATE.name
        template.write_text(template.read_text() + canary)
        wants = directory / "saynad.target.wants"
        wants.mkdir()
        for index in range(3):
            (wants / f"saynad@{index}.service").symlink_to(f"../{TEMPLATE.name}")
        result = await trio.run_process(
            [tool, "verify", str(directory / "saynad.target")],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        output = (result.stdout + result.stderr).decode()
        assert result.returncode == 0, output
        return output

    assert "saynad" not in await verify("clean", "")  # three clean shards
    # A key systemd does not know, appended to the template, is warned about once per
    # enabled instance: the target really loaded the three.
    warned = await verify("canary", "SaynadCanaryKey=1\n")
    lines = [x for x in warned.splitlines() if TEMPLATE.name in x and "SaynadCanaryKey" in x]
    assert len(lines) == 3, warned
