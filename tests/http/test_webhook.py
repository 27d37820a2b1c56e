"""The SIP webhook route end to end: signed POST → 202 → a session in the named room;
every bad input gets its status and starts nothing; admission is exact."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import trio
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from saynad.actors.admission import inbound_session_name
from saynad.actors.registry import SessionState
from saynad.app import Daemon
from saynad.protocol.webhooks import encode_webhook_payload
from tests.support.daemon import running_daemon, states, wait_until
from tests.support.http import samples
from tests.support.samples import signed, signed_call, webhook_payload

HOOK = "/webhooks/sip"


def inbound(daemon: Daemon) -> dict[str, SessionState]:
    return {r.name: r.state for r in daemon.registry.snapshot() if r.origin == "inbound"}


def rooms(daemon: Daemon) -> set[str]:
    assert daemon.emulator is not None
    return set(daemon.emulator.state.rooms)


async def test_a_signed_webhook_starts_a_call_session_that_ends_when_the_caller_leaves(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as (daemon, client):
        headers, body = signed_call("sip-+15551230001", "EV_call1")
        with capture_logs(processors=[merge_contextvars]) as logs:
            response = await client.post(HOOK, headers=headers, content=body)
            # Answered at once; the session starts in the background (how fast the
            # answer is: docs/benchmarks-webhooks.md).
            assert response.status_code == 202
            assert response.json() == {"session": "sip-EV_call1", "room": "sip-+15551230001"}
            await wait_until(lambda: inbound(daemon).get("sip-EV_call1") is SessionState.READY)

        listing = (await client.get("/sessions")).json()["sessions"]
        call = next(row for row in listing if row["name"] == "sip-EV_call1")
        assert (call["origin"], call["template"], call["room"]) == (
            "inbound",
            "call",
            "sip-+15551230001",
        )
        assert "sip-+15551230001" in rooms(daemon)
        ready_line = next(
            line
            for line in logs
            if line["event"] == "session state"
            and line["new"] == "ready"
            and line["session"] == "sip-EV_call1"
        )
        assert ready_line["caller"] == "+15551230001"
        assert ready_line["callee"] == "+15557654321"
        assert ready_line["sip_headers"] == {"x-to-ip": "sip.example.com", "x-customer": "acme"}
        ticket = daemon.admission.ticket("sip-EV_call1")
        assert ticket is not None
        assert ticket.call is not None
        assert ticket.call.sip_headers["x-customer"] == "acme"
        assert daemon.inbound_active == 1

        # The caller joins, then hangs up: the session ends and its slot is released.
        assert daemon.emulator is not None
        world = daemon.emulator.state
        world.join("sip-+15551230001", "sip_+15551230001", kind="SIP")
        world.leave("sip-+15551230001", "sip_+15551230001")
        await wait_until(lambda: "sip-EV_call1" not in inbound(daemon))
        assert daemon.inbound_active == 0
        assert daemon.admission.ticket("sip-EV_call1") is None
        text = (await client.get("/metrics")).text
        assert samples(text, "saynad_webhook_requests_total")[(("outcome", "accepted"),)] == 1
        assert samples(text, "saynad_session_starts_total")[(("origin", "inbound"),)] == 1
        assert samples(text, "saynad_inbound_sessions")[()] == 0


async def test_every_bad_input_gets_its_status_and_starts_nothing(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, max_body_bytes=4096) as (daemon, client):
        await wait_until(lambda: states(daemon).get("lobby") is SessionState.READY)
        before = rooms(daemon)
        body = encode_webhook_payload(webhook_payload("sip-room-x"))
        good = signed(body, "EV_good")

        async def post(headers: dict[str, str], content: bytes = body) -> httpx.Response:
            return await client.post(HOOK, headers=headers, content=content)

        # 401: missing headers, malformed signature, wrong secret, tampered body, stale.
        unauthorized = [
            {},
            {k: v for k, v in good.items() if k != "X-Sayna-Signature"},
            {**good, "X-Sayna-Signature": "v1=nothex"},
            signed(body, "EV_wrong", secret="another-secret-0123456789"),
            signed(body, "EV_stale", timestamp=int(time.time()) - 3600),
        ]
        for headers in unauthorized:
            response = await post(headers)
            assert response.status_code == 401
            assert response.json() == {"error": "unauthorized"}  # no detail leaked
        tampered = await post(good, body.replace(b"sip-room-x", b"sip-room-y"))
        assert tampered.status_code == 401

        # 400: signed, but not a SIP webhook.
        for bad in (b"not json", b"[]", b'{"room": {"name": "x"}}'):
            response = await post(signed(bad, f"EV_bad{len(bad)}"), bad)
            assert response.status_code == 400

        # 413: too large, announced by Content-Length or streamed without one.
        big = b"x" * 5000
        assert (await post(signed(big, "EV_big"), big)).status_code == 413

        async def chunks() -> object:
            for _ in range(10):
                yield b"y" * 1000

        streamed = await client.post(
            HOOK,
            headers=signed(b"y" * 10_000, "EV_stream"),
            content=chunks(),  # type: ignore[arg-type]
        )
        assert streamed.status_code == 413

        # 405: the webhook takes only POST.
        assert (await client.get(HOOK)).status_code == 405

        assert inbound(daemon) == {}
        assert rooms(daemon) == before

        # 202 once, then 409 for the same event id (a re-delivery).
        assert (await post(good)).status_code == 202
        replay = await post(good)
        assert (replay.status_code, replay.json()) == (409, {"error": "duplicate event"})
        assert list(inbound(daemon)) == ["sip-EV_good"]

        text = (await client.get("/metrics")).text
        outcomes = {
            labels[0][1]: value
            for labels, value in samples(text, "saynad_webhook_requests_total").items()
        }
        assert outcomes["unauthorized"] == 5  # four bad signatures + the tampered body
        assert outcomes["stale"] == 1
        assert outcomes["bad_payload"] == 3
        assert outcomes["too_large"] == 2
        assert outcomes["method_not_allowed"] == 1
        assert outcomes["accepted"] == 1
        assert outcomes["replay"] == 1
        assert outcomes["saturated"] == outcomes["draining"] == 0


async def test_admission_is_exact_under_concurrency_and_refusals_release_the_event_id(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, sessions=(), max_sessions=3) as (daemon, client):
        calls = [signed_call(f"sip-room-{i}", f"EV_c{i}") for i in range(20)]
        statuses: dict[int, httpx.Response] = {}

        async def send(i: int) -> None:
            headers, body = calls[i]
            statuses[i] = await client.post(HOOK, headers=headers, content=body)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(send, i)
        accepted = [i for i, r in statuses.items() if r.status_code == 202]
        refused = [i for i, r in statuses.items() if r.status_code == 503]
        assert len(accepted) == 3
        assert len(refused) == 17
        assert all(statuses[i].headers["retry-after"] == "5" for i in refused)
        assert len(inbound(daemon)) == 3
        assert daemon.inbound_active == 3
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["admission_open"] is False

        # One call ends; a refused webhook delivered again (same id, same signature) now
        # gets in: the refusal released its event id.
        first = accepted[0]
        assert daemon.emulator is not None
        daemon.emulator.state.join(f"sip-room-{first}", "caller")
        await wait_until(lambda: inbound(daemon).get(f"sip-EV_c{first}") is SessionState.READY)
        daemon.emulator.state.leave(f"sip-room-{first}", "caller")
        await wait_until(lambda: daemon.inbound_active == 2)
        headers, body = calls[refused[0]]
        again = await client.post(HOOK, headers=headers, content=body)
        assert again.status_code == 202
        assert daemon.inbound_active == 3


async def test_a_call_ends_at_max_duration(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, sessions=(), max_duration_s=0.5) as (daemon, client):
        headers, body = signed_call("sip-short", "EV_short")
        with capture_logs() as logs:
            assert (await client.post(HOOK, headers=headers, content=body)).status_code == 202
            await wait_until(lambda: daemon.inbound_active == 0)
        ended = next(line for line in logs if line["event"] == "session ended")
        assert ended["reason"] == "max duration"
        assert inbound(daemon) == {}


async def test_draining_refuses_calls_and_readiness_while_serving_metrics(
    tmp_path: Path,
) -> None:
    goodbye = "Goodbye, this line takes a while to say. " * 4
    async with running_daemon(tmp_path, goodbye=goodbye, drain_s=3.0) as (daemon, client):
        await wait_until(lambda: states(daemon).get("lobby") is SessionState.READY)
        assert (await client.get("/readyz")).status_code == 200
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.drain)
            await wait_until(lambda: daemon.draining)
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["not_draining"] is False
            headers, body = signed_call("sip-late", "EV_late")
            late = await client.post(HOOK, headers=headers, content=body)
            assert late.status_code == 503
            assert late.headers["retry-after"] == "30"
            # Still draining (the goodbye is being spoken) and /metrics still answers.
            assert states(daemon).get("lobby") is SessionState.DRAINING
            text = (await client.get("/metrics")).text
            assert samples(text, "saynad_draining")[()] == 1
            assert samples(text, "saynad_webhook_requests_total")[(("outcome", "draining"),)] == 1
        assert inbound(daemon) == {}


def test_inbound_session_names_are_safe_and_distinct() -> None:
    assert inbound_session_name("EV_abc123") == "sip-EV_abc123"
    odd = inbound_session_name("EV/../x")
    assert odd.startswith("sip-EV_.._x-")
    assert "/" not in odd
    assert inbound_session_name("EV/x") != inbound_session_name("EV?x")
    assert len(inbound_session_name("E" * 256)) <= 128


async def test_the_room_name_is_used_exactly_as_sent(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, sessions=()) as (daemon, client):
        room = "sip-{session} {x} }{ +1555"
        headers, body = signed_call(room, "EV_braces")
        response = await client.post(HOOK, headers=headers, content=body)
        assert response.status_code == 202
        await wait_until(lambda: inbound(daemon).get("sip-EV_braces") is SessionState.READY)
        assert daemon.registry.get("sip-EV_braces").room == room  # type: ignore[union-attr]
        assert room in rooms(daemon)


async def test_an_admission_bug_answers_500_and_releases_the_event_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(tmp_path, sessions=()) as (daemon, client):
        real = daemon.admission.admit

        async def broken(name: object, child: object) -> object:
            raise RuntimeError("boom")

        monkeypatch.setattr(daemon.admission, "admit", broken)
        headers, body = signed_call("sip-bug", "EV_bug")
        with capture_logs() as logs:
            failed = await client.post(HOOK, headers=headers, content=body)
        assert (failed.status_code, failed.json()) == (500, {"error": "internal error"})
        assert any(line["event"] == "webhook admission failed" for line in logs)
        monkeypatch.setattr(daemon.admission, "admit", real)
        retried = await client.post(HOOK, headers=headers, content=body)
        assert retried.status_code == 202
        text = (await client.get("/metrics")).text
        assert samples(text, "saynad_webhook_requests_total")[(("outcome", "error"),)] == 1
