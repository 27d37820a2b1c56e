"""A real Prometheus scraping a real ``saynad run``, and ``promtool`` over the shipped
configuration, rules and the daemon's real ``/metrics`` output."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.support.daemon import running_daemon, states, wait_until
from tests.support.processes import daemon_process, free_port, require_tool
from tests.support.samples import daemon_config, signed_call
from tests.timing import HANG_S

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "saynad" / "data" / "prometheus"

SCRAPE = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: saynad
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["{target}"]
"""


def _prometheus_config(directory: Path, target: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "alerts.yml", directory / "alerts.yml")
    config = directory / "prometheus.yml"
    config.write_text(SCRAPE.format(target=target))
    return config


@asynccontextmanager
async def prometheus(
    tmp_path: Path, target: str | None = None, *, config: Path | None = None
) -> AsyncIterator[str]:
    """Prometheus on a free loopback port scraping ``target`` every second, or running
    the configuration file ``config`` (its data under ``tmp_path``)."""
    binary = require_tool("prometheus")
    if config is None:
        assert target is not None
        config = _prometheus_config(tmp_path, target)
    port = free_port()
    process = await trio.lowlevel.open_process(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    try:
        response = await client.get("/api/v1/query", params={"query": promql})
    except httpx.TransportError:
        return []  # Prometheus is still starting
    if response.status_code != 200:
        return []
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


async def value_of(client: httpx.AsyncClient, promql: str, expected: float) -> None:
    """Wait until ``promql`` returns exactly one series with value ``expected``."""
    with trio.fail_after(HANG_S):
        while True:
            result = await query(client, promql)
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                return
            await trio.sleep(0.25)


async def test_prometheus_scrapes_saynad_and_finds_the_expected_series(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(daemon_config(sessions=("lobby", "desk")))
    async with daemon_process(config) as daemon:
        async with httpx.AsyncClient(base_url=daemon.url) as saynad:
            headers, body = signed_call("sip-+15550009999", "EV_prom")
            assert (
                await saynad.post("/webhooks/sip", headers=headers, content=body)
            ).status_code == 202
            assert (await saynad.post("/webhooks/sip", content=body)).status_code == 401

        async with (
            prometheus(tmp_path / "prom", daemon.url.removeprefix("http://")) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            await value_of(client, 'up{job="saynad"}', 1)
            await value_of(client, 'saynad_sessions{state="ready"}', 3)
            await value_of(client, "saynad_inbound_sessions", 1)
            await value_of(client, 'saynad_webhook_requests_total{outcome="accepted"}', 1)
            await value_of(client, 'saynad_webhook_requests_total{outcome="unauthorized"}', 1)
            await value_of(client, 'saynad_session_starts_total{origin="config"}', 2)
            await value_of(client, 'saynad_ws_frames_total{direction="out",type="config"}', 3)
            await value_of(client, "sum(saynad_session_failures_total)", 0)
            build = await query(client, "saynad_build_info")
            assert build[0]["metric"]["version"]
            # The shipped alert rules load and evaluate against real series.
            rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
            group = next(g for g in rules if g["name"] == "saynad")
            assert all(rule["health"] == "ok" for rule in group["rules"]), group["rules"]
            firing = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
            assert [a for a in firing if a["state"] == "firing"] == []

        daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(HANG_S):
            assert await daemon.process.wait() == 0


async def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    binary = require_tool("promtool")
    return await trio.run_process(
        [binary, *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
    )


async def test_promtool_accepts_the_scrape_config_and_the_rules() -> None:
    config = await promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = await promtool("check", "rules", str(DEPLOY / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tests = await promtool("test", "rules", str(DEPLOY / "alerts_test.yml"))
    assert tests.returncode == 0, tests.stdout + tests.stderr


async def test_promtool_lints_the_real_metrics_output(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, sessions=("lobby",)) as (daemon, client):
        await wait_until(
            lambda: (
                bool(states(daemon)) and all(s.value == "ready" for s in states(daemon).values())
            )
        )
        headers, body = signed_call("sip-lint", "EV_lint")
        assert (
            await client.post("/webhooks/sip", headers=headers, content=body)
        ).status_code == 202
        text = (await client.get("/metrics")).content
    result = await promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""  # no lint warnings either
