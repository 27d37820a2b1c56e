"""The read-only routes and the control routes of an in-process daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import saynad.http
from saynad.actors.registry import SessionState
from tests.support.daemon import running_daemon, states, wait_until
from tests.support.http import samples
from tests.support.samples import TOKEN

ROW_KEYS = {
    "name",
    "origin",
    "template",
    "state",
    "since",
    "restarts",
    "last_error",
    "room",
    "stream_id",
}


async def test_health_readiness_sessions_and_metrics(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, sessions=("lobby", "desk")) as (daemon, client):
        await wait_until(lambda: set(states(daemon).values()) == {SessionState.READY})

        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert all(ready.json()["checks"].values())

        listing = (await client.get("/sessions")).json()["sessions"]
        assert [row["name"] for row in listing] == ["desk", "lobby"]
        assert all(set(row) == ROW_KEYS for row in listing)
        assert {row["state"] for row in listing} == {"ready"}
        assert all(row["origin"] == "config" and row["template"] == "voice" for row in listing)
        one = await client.get("/sessions/lobby")
        assert one.status_code == 200
        assert one.json()["stream_id"] == daemon.registry.get("lobby").stream_id  # type: ignore[union-attr]
        assert (await client.get("/sessions/nobody")).status_code == 404

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = metrics.text
        assert samples(text, "saynad_sessions")[(("state", "ready"),)] == 2
        assert samples(text, "saynad_session_starts_total")[(("origin", "config"),)] == 2
        out = samples(text, "saynad_ws_frames_total")
        assert out[(("direction", "out"), ("type", "config"))] == 2
        assert out[(("direction", "in"), ("type", "ready"))] == 2
        assert samples(text, "saynad_inbound_max_sessions")[()] == 5
        # saynad's catalog plus the standard process and interpreter families.
        assert all(name.startswith(("saynad_", "process_", "python_")) for name in _names(text))
        assert samples(text, "process_resident_memory_bytes")[()] > 0

        openmetrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")


def _names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


async def test_wrong_methods_and_unknown_paths(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, inbound=False) as (_daemon, client):
        response = await client.post("/metrics")
        assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")
        assert (await client.delete("/sessions")).status_code == 405
        assert (await client.get("/nowhere")).status_code == 404
        # Without inbound.sip_webhook there is no webhook route.
        assert (await client.post("/webhooks/sip", content=b"{}")).status_code == 404
        assert (await client.get("/sessions/lobby/explode")).status_code == 404


async def test_control_routes_do_not_exist_without_a_token(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as (_daemon, client):
        for path in ("/reload", "/sessions/lobby/restart"):
            response = await client.post(path, headers={"authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 404


async def test_control_routes_need_the_token(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, control=True) as (daemon, client):
        await wait_until(lambda: states(daemon).get("lobby") is SessionState.READY)
        assert daemon.emulator is not None
        before = daemon.emulator.state.connections_total
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": TOKEN}):
            response = await client.post("/sessions/lobby/restart", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert (
            await client.post("/reload", headers={"authorization": "Bearer x"})
        ).status_code == 401
        assert daemon.emulator.state.connections_total == before

        auth = {"authorization": f"Bearer {TOKEN}"}
        response = await client.post("/sessions/lobby/restart", headers=auth)
        assert (response.status_code, response.json()) == (202, {"restarting": "lobby"})
        await wait_until(
            lambda: (
                daemon.emulator is not None
                and daemon.emulator.state.connections_total == before + 1
                and states(daemon).get("lobby") is SessionState.READY
            )
        )
        assert (await client.post("/sessions/ghost/restart", headers=auth)).status_code == 404

        reload = await client.post("/reload", headers=auth)
        assert reload.status_code == 200
        assert reload.json() == {"ok": True, "added": 0, "removed": 0, "changed": 0, "error": None}
        daemon.config_path.write_text("sessions: [oops\n")
        broken = await client.post("/reload", headers=auth)
        assert broken.status_code == 422
        assert broken.json()["ok"] is False
        assert str(daemon.config_path) in broken.json()["error"]
        assert daemon.reloads == {"ok": 1, "error": 1}
        text = (await client.get("/metrics")).text
        assert samples(text, "saynad_config_reloads_total") == {
            (("outcome", "ok"),): 1,
            (("outcome", "error"),): 1,
        }
        assert samples(text, "saynad_config_last_reload_successful")[()] == 0


async def test_healthz_fails_when_the_supervisor_stops_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(saynad.http, "HEALTH_TIMEOUT_S", 0.2)
    async with running_daemon(tmp_path, inbound=False) as (daemon, client):
        assert (await client.get("/healthz")).status_code == 200
        assert daemon.supervisor is not None

        async def stuck() -> None:
            await trio.sleep_forever()

        monkeypatch.setattr(daemon.supervisor, "ping", stuck)
        response = await client.get("/healthz")
        assert (response.status_code, response.json()) == (
            503,
            {"status": "supervisor not answering"},
        )
