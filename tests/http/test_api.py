"""The call control API (/v1) of an in-process daemon on the embedded emulator."""

from __future__ import annotations

from pathlib import Path

import httpx

from saynad.actors.registry import SessionState
from saynad.app import Daemon
from tests.support.daemon import running_daemon, states, wait_until
from tests.support.http import samples
from tests.support.samples import (
    CALLER_ID,
    DIALLER_TOKEN,
    OPERATOR_TOKEN,
    READER_TOKEN,
)

OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
DIALLER = {"authorization": f"Bearer {DIALLER_TOKEN}"}
READER = {"authorization": f"Bearer {READER_TOKEN}"}


def emulator_calls(daemon: Daemon) -> list[dict[str, object]]:
    assert daemon.emulator is not None
    return daemon.emulator.state.calls


async def test_an_outbound_call_is_placed_once_its_session_is_ready(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True, sessions=()) as (daemon, client):
        response = await client.post(
            "/v1/calls",
            json={"template": "call", "to_phone_number": " +15551234567 "},
            headers=DIALLER,
        )
        assert response.status_code == 202
        body = response.json()
        name, room = body["session"], body["room"]
        assert name.startswith("call-")
        assert room == name
        assert body["replayed"] is False

        await wait_until(lambda: states(daemon).get(name) is SessionState.READY)
        row = daemon.registry.get(name)
        assert row is not None
        assert (row.origin, row.room) == ("outbound", room)
        await wait_until(lambda: len(emulator_calls(daemon)) == 1)
        dialled = emulator_calls(daemon)[0]
        assert dialled["room_name"] == room
        assert dialled["to_phone_number"] == "+15551234567"
        assert dialled["from_phone_number"] == CALLER_ID
        assert dialled["participant_identity"] == "sip_+15551234567"

        # The emulator joins the callee at once: the call is answered.
        status = daemon.admission.call_status(name)
        assert status is not None
        await wait_until(lambda: status.state == "answered")
        answer = await client.get(f"/v1/sessions/{name}", headers=READER)
        assert answer.status_code == 200
        call = answer.json()["call"]
        assert (call["state"], call["to"], call["from"]) == ("answered", "+15551234567", CALLER_ID)
        assert call["sip_call_id"] == dialled["sip_call_id"]

        # The callee hangs up: the session ends, and its outcome stays readable.
        assert daemon.emulator is not None
        daemon.emulator.state.leave(room, "sip_+15551234567")
        await wait_until(lambda: daemon.registry.get(name) is None)
        ended = await client.get(f"/v1/sessions/{name}", headers=READER)
        assert ended.status_code == 200
        assert ended.json()["state"] == "stopped"
        assert ended.json()["call"]["state"] == "ended"
        assert ended.json()["call"]["reason"] is None

        text = (await client.get("/metrics")).text
        assert samples(text, "saynad_outbound_calls_total")[(("outcome", "answered"),)] == 1
        assert samples(text, "saynad_session_starts_total")[(("origin", "outbound"),)] == 1
        api = samples(text, "saynad_api_requests_total")
        assert api[(("outcome", "accepted"), ("route", "calls"))] == 1


async def _post_call(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(
        "/v1/calls",
        json={"template": "call", "to_phone_number": "+15551234567"},
        headers={**DIALLER, "idempotency-key": key},
    )
