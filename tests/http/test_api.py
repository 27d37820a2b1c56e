"""The call control API (/v1) of an in-process daemon on the embedded emulator."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from saynad.actors.registry import SessionState
from saynad.app import Daemon
from saynad.config._schema import DEFAULT_MAX_SESSIONS
from saynad.emulator import EmulatorOptions, open_emulator
from saynad.shipped import example_file, read_shipped
from tests.support.daemon import daemon_in_process, running_daemon, states, wait_until
from tests.support.http import samples
from tests.support.samples import (
    CALLER_ID,
    DIALLER_TOKEN,
    OPERATOR_TOKEN,
    READER_TOKEN,
    daemon_config,
    signed_call,
)
from tests.timing import HANG_S

HOOK = "/webhooks/sip"

OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
DIALLER = {"authorization": f"Bearer {DIALLER_TOKEN}"}
READER = {"authorization": f"Bearer {READER_TOKEN}"}


def emulator_calls(daemon: Daemon) -> list[dict[str, object]]:
    assert daemon.emulator is not None
    return list(daemon.emulator.state.calls)


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


async def test_an_idempotent_retry_places_one_call(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True, sessions=()) as (daemon, client):
        # Three retries at once and one after: one session, one dial request.
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await _post_call(client, "order-42"))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(post)
        answers.append(await _post_call(client, "order-42"))
        assert [a.status_code for a in answers] == [202] * 4
        assert len({a.json()["session"] for a in answers}) == 1
        assert sorted(a.json()["replayed"] for a in answers) == [False, True, True, True]
        name = answers[0].json()["session"]
        await wait_until(lambda: len(emulator_calls(daemon)) == 1)
        await wait_until(lambda: states(daemon).get(name) is SessionState.READY)
        await trio.sleep(0.2)  # no second dial arrives late
        assert len(emulator_calls(daemon)) == 1
        assert daemon.admission.active == 1

        # The same key with another request is a conflict; another key is another call.
        other = await client.post(
            "/v1/calls",
            json={"template": "call", "to_phone_number": "+15559999999"},
            headers={**DIALLER, "idempotency-key": "order-42"},
        )
        assert other.status_code == 409
        assert other.json()["error"] == "conflict"
        second = await _post_call(client, "order-43")
        assert second.status_code == 202
        assert second.json()["session"] != name
        # Keys are the token holder's own: another holder's "order-42" is a new call.
        operator = await client.post(
            "/v1/calls",
            json={"template": "call", "to_phone_number": "+15551234567"},
            headers={**OPERATOR, "idempotency-key": "order-42"},
        )
        assert operator.status_code == 202
        assert operator.json()["session"] not in (name, second.json()["session"])
        await wait_until(lambda: len(emulator_calls(daemon)) == 3)
        bad = await client.post(
            "/v1/calls",
            json={"template": "call", "to_phone_number": "+15551234567"},
            headers={**DIALLER, "idempotency-key": "has space"},
        )
        assert bad.status_code == 400


async def test_tokens_need_their_scope(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True) as (daemon, client):
        await wait_until(lambda: states(daemon).get("lobby") is SessionState.READY)
        call = {"template": "call", "to_phone_number": "+15551234567"}
        # No token, an unknown one, a malformed header: 401.
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": OPERATOR_TOKEN}):
            response = await client.post("/v1/calls", json=call, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        # A known token without the scope: 403, and nothing happens.
        refused = [
            await client.post("/v1/calls", json=call, headers=READER),
            await client.post("/v1/sessions", json={"template": "call"}, headers=READER),
            await client.post("/v1/sessions/lobby/speak", json={"text": "hi"}, headers=DIALLER),
            await client.post("/v1/sessions/lobby/hangup", headers=READER),
            await client.delete("/v1/sessions/lobby", headers=DIALLER),
            await client.post("/v1/reload", headers=DIALLER),
            await client.post("/reload", headers=READER),
            await client.post("/v1/sessions/lobby/restart", headers=READER),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert all(r.json()["error"] == "forbidden" for r in refused)
        assert emulator_calls(daemon) == []
        assert daemon.admission.active == 0
        # Once tokens are set, reads need the read scope.
        assert (await client.get("/v1/sessions")).status_code == 401
        assert (await client.get("/sessions")).status_code == 401
        assert (await client.get("/sessions/lobby")).status_code == 401
        assert (await client.get("/v1/sessions", headers=READER)).status_code == 200
        assert (await client.get("/sessions", headers=DIALLER)).status_code == 200
        huge = await client.post("/v1/reload", headers=OPERATOR, content=b"x" * 70_000)
        assert huge.status_code == 413
        # What never needs a token: the document, health, metrics.
        assert (await client.get("/v1/openapi.json")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        text = (await client.get("/metrics")).text
        api = samples(text, "saynad_api_requests_total")
        assert api[(("outcome", "unauthorized"), ("route", "calls"))] == 3
        assert api[(("outcome", "forbidden"), ("route", "calls"))] == 1
        assert api[(("outcome", "forbidden"), ("route", "reload"))] == 2
        assert api[(("outcome", "too_large"), ("route", "reload"))] == 1
        assert api[(("outcome", "unauthorized"), ("route", "read"))] == 3


async def test_bodies_are_bounded_and_strict(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True, sessions=()) as (daemon, client):
        cases = [
            # unknown field, wrong type, not JSON, over a bound, missing field
            ({"template": "call", "to_phone_number": "+1555", "extra": 1}, 400),
            ({"template": "call", "to_phone_number": 15551234567}, 400),
            (b"{not json", 400),
            ({"template": "call", "to_phone_number": "+1555", "variables": {"x": "y" * 2000}}, 400),
            ({"to_phone_number": "+15551234567"}, 400),
            # well-formed but not acceptable: 422
            ({"template": "call", "to_phone_number": "+1 555 123"}, 422),
            ({"template": "call", "to_phone_number": "555-1234"}, 422),
            ({"template": "call", "to_phone_number": "+"}, 422),
            ({"template": "voice", "to_phone_number": "+15551234567"}, 422),  # not outbound
            ({"template": "nope", "to_phone_number": "+15551234567"}, 422),
        ]
        for body, status in cases:
            if isinstance(body, bytes):
                response = await client.post(
                    "/v1/calls",
                    content=body,
                    headers={**DIALLER, "content-type": "application/json"},
                )
            else:
                response = await client.post("/v1/calls", json=body, headers=DIALLER)
            assert response.status_code == status, (body, response.text)
            assert "error" in response.json()
        plain = await client.post(
            "/v1/calls",
            content=b'{"template": "call", "to_phone_number": "+15551234567"}',
            headers={**DIALLER, "content-type": "text/plain"},
        )
        assert plain.status_code == 415
        huge = await client.post(
            "/v1/calls",
            content=b'{"template": "' + b"x" * 70_000 + b'"}',
            headers={**DIALLER, "content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert emulator_calls(daemon) == []
        assert daemon.admission.active == 0


async def test_hangup_says_goodbye_then_ends(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True, sessions=()) as (daemon, client):
        started = await client.post(
            "/v1/sessions",
            json={"template": "call", "variables": {"name": "Ada"}},
            headers=OPERATOR,
        )
        assert started.status_code == 202
        name = started.json()["session"]
        assert name.startswith("api-")
        await wait_until(lambda: states(daemon).get(name) is SessionState.READY)
        assert daemon.emulator is not None
        wire = daemon.emulator.state.wire_log

        spoke = await client.post(
            f"/v1/sessions/{name}/speak",
            json={"text": "one moment", "interrupt": True},
            headers=OPERATOR,
        )
        assert (spoke.status_code, spoke.json()) == (202, {"session": name, "action": "speak"})
        await wait_until(lambda: any('"one moment"' in frame for frame in wire))

        with capture_logs(processors=[merge_contextvars]) as logs:
            hung = await client.post(f"/v1/sessions/{name}/hangup", headers=OPERATOR)
            assert hung.status_code == 202
            await wait_until(lambda: daemon.registry.get(name) is None)
        frames = list(wire)
        goodbye = next(i for i, f in enumerate(frames) if '"Goodbye."' in f)
        assert '"type":"speak"' in frames[goodbye]
        assert '"type":"clear"' in frames[goodbye - 1]
        ended = next(line for line in logs if line["event"] == "session ended")
        assert ended["reason"] == "hangup"
        assert ended["session"] == name
        gone = await client.post(f"/v1/sessions/{name}/speak", json={"text": "x"}, headers=OPERATOR)
        assert gone.status_code == 404
        row = (await client.get(f"/v1/sessions/{name}", headers=OPERATOR)).json()
        assert (row["state"], row["origin"], row["call"]) == ("stopped", "on_demand", None)


async def test_a_hangup_without_text_says_the_templates_goodbye_with_its_variables(
    tmp_path: Path,
) -> None:
    call_end = '\n      end: {goodbye_text: "Bye {name}, talk soon."}'
    async with running_daemon(tmp_path, api=True, sessions=(), call_end=call_end) as (
        daemon,
        client,
    ):
        started = await client.post(
            "/v1/sessions",
            json={"template": "call", "variables": {"name": "Ada"}},
            headers=OPERATOR,
        )
        name = started.json()["session"]
        await wait_until(lambda: states(daemon).get(name) is SessionState.READY)
        assert daemon.emulator is not None
        wire = daemon.emulator.state.wire_log
        hung = await client.post(f"/v1/sessions/{name}/hangup", headers=OPERATOR)
        assert hung.status_code == 202
        await wait_until(lambda: daemon.registry.get(name) is None)
        spoken = [frame for frame in wire if '"type":"speak"' in frame]
        assert '"Bye Ada, talk soon."' in spoken[-1]
        assert not any('"Goodbye."' in frame for frame in spoken)


async def test_hangup_text_and_delete(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True) as (daemon, client):
        names = []
        for _ in range(2):
            started = await client.post("/v1/sessions", json={"template": "call"}, headers=OPERATOR)
            names.append(started.json()["session"])
        await wait_until(lambda: all(states(daemon).get(n) is SessionState.READY for n in names))
        assert daemon.emulator is not None
        wire = daemon.emulator.state.wire_log
        custom = await client.post(
            f"/v1/sessions/{names[0]}/hangup", json={"text": "Bye now"}, headers=OPERATOR
        )
        assert custom.status_code == 202
        with capture_logs(processors=[merge_contextvars]) as logs:
            deleted = await client.delete(f"/v1/sessions/{names[1]}", headers=OPERATOR)
            assert deleted.status_code == 202
            await wait_until(lambda: all(daemon.registry.get(n) is None for n in names))
        assert any('"Bye now"' in frame for frame in wire)
        reasons = {
            line["session"]: line["reason"] for line in logs if line["event"] == "session ended"
        }
        assert reasons[names[1]] == "deleted"
        # Configured sessions are not hung up or deleted over the API.
        assert (await client.post("/v1/sessions/lobby/hangup", headers=OPERATOR)).status_code == 409
        assert (await client.delete("/v1/sessions/lobby", headers=OPERATOR)).status_code == 409
        assert (await client.delete("/v1/sessions/ghost", headers=OPERATOR)).status_code == 404
        # Transfers need a room: lobby (WebSocket only) has none.
        transfer = await client.post(
            "/v1/sessions/lobby/transfer", json={"to": "+15550002000"}, headers=OPERATOR
        )
        assert transfer.status_code == 409
        bad = await client.post(
            "/v1/sessions/lobby/transfer", json={"to": "front desk"}, headers=OPERATOR
        )
        assert bad.status_code == 422


async def test_fifty_mixed_requests_never_exceed_max_sessions(tmp_path: Path) -> None:
    cap = 10
    async with running_daemon(tmp_path, api=True, max_sessions=cap, sessions=()) as (
        daemon,
        client,
    ):
        admitted_peak = 0
        rows_peak = 0

        def watch(old: SessionState | None, new: SessionState) -> None:
            nonlocal admitted_peak, rows_peak
            admitted_peak = max(admitted_peak, daemon.admission.active)
            rows_peak = max(rows_peak, len(daemon.registry.rows))

        daemon.registry.listeners.append(watch)
        answers: dict[str, list[httpx.Response]] = {"inbound": [], "outbound": [], "on_demand": []}

        async def inbound(i: int) -> None:
            headers, body = signed_call(f"sip-room-{i}", f"EV_mixed{i}")
            answers["inbound"].append(await client.post(HOOK, headers=headers, content=body))

        async def outbound(i: int) -> None:
            call = {"template": "call", "to_phone_number": f"+1555000{i:04d}"}
            answers["outbound"].append(await client.post("/v1/calls", json=call, headers=DIALLER))

        async def on_demand(i: int) -> None:
            answers["on_demand"].append(
                await client.post("/v1/sessions", json={"template": "call"}, headers=DIALLER)
            )

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon((inbound, outbound, on_demand)[i % 3], i)

        every = [a for kind in answers.values() for a in kind]
        assert len(every) == 50
        accepted = [a for a in every if a.status_code == 202]
        refused = [a for a in every if a.status_code != 202]
        # Nothing ended meanwhile, so exactly the cap was admitted; the rest were told
        # to come back later.
        assert len(accepted) == cap
        assert {a.status_code for a in refused} == {503}
        assert {a.headers["retry-after"] for a in refused} == {"5"}
        assert admitted_peak <= cap
        assert rows_peak <= cap
        assert daemon.admission.active == cap
        names = {a.json()["session"] for a in accepted}
        await wait_until(lambda: all(states(daemon).get(n) is SessionState.READY for n in names))
        placed = sum(1 for a in answers["outbound"] if a.status_code == 202)
        await wait_until(lambda: len(emulator_calls(daemon)) == placed)
        assert admitted_peak <= cap
        assert rows_peak <= cap
        text = (await client.get("/metrics")).text
        api = samples(text, "saynad_api_requests_total")
        webhooks = samples(text, "saynad_webhook_requests_total")
        saturated = (
            api[(("outcome", "saturated"), ("route", "calls"))]
            + api[(("outcome", "saturated"), ("route", "sessions"))]
            + webhooks[(("outcome", "saturated"),)]
        )
        assert saturated == 50 - cap


async def test_draining_refuses_new_calls_and_sessions(tmp_path: Path) -> None:
    goodbye = "Goodbye, this line takes a while to say. " * 4
    async with running_daemon(tmp_path, api=True, goodbye=goodbye, drain_s=3.0) as (
        daemon,
        client,
    ):
        await wait_until(lambda: states(daemon).get("lobby") is SessionState.READY)
        call = {"template": "call", "to_phone_number": "+15551234567"}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.drain)
            await wait_until(lambda: daemon.draining)
            late_call = await client.post("/v1/calls", json=call, headers=DIALLER)
            late_session = await client.post(
                "/v1/sessions", json={"template": "call"}, headers=DIALLER
            )
            retry = await client.post(
                "/v1/calls", json=call, headers={**DIALLER, "idempotency-key": "k1"}
            )
            for response in (late_call, late_session, retry):
                assert response.status_code == 503
                assert response.headers["retry-after"] == "30"
                assert response.json()["error"] == "draining"
            # Still draining (the goodbye is being said): nothing was admitted.
            assert states(daemon).get("lobby") is SessionState.DRAINING
            assert daemon.admission.active == 0
        assert emulator_calls(daemon) == []


async def test_readyz_is_503_while_the_api_calls_fill_max_sessions(tmp_path: Path) -> None:
    # A full shard leaves the load balancer (a Kubernetes Service's endpoints): the
    # sessions of the API count toward max_sessions as the webhooks' do; the always-on
    # sessions (three here, above the cap of two) never do.
    always_on = ("lobby", "desk", "hall")
    async with running_daemon(
        tmp_path, api=True, inbound=False, max_sessions=2, sessions=always_on
    ) as (daemon, client):
        await wait_until(
            lambda: all(states(daemon).get(n) is SessionState.READY for n in always_on)
        )
        assert (await client.get("/readyz")).status_code == 200
        call = {"template": "call", "to_phone_number": "+15551234567"}
        placed = [(await client.post("/v1/calls", json=call, headers=DIALLER)) for _ in range(2)]
        assert [r.status_code for r in placed] == [202, 202]
        full = await client.get("/readyz")
        assert full.status_code == 503
        assert full.json() == {
            "status": "not ready",
            "checks": {
                "config_loaded": True,
                "supervisor_up": True,
                "not_draining": True,
                "admission_open": False,
            },
        }
        refused = await client.post("/v1/calls", json=call, headers=DIALLER)
        assert (refused.status_code, refused.json()["error"]) == (503, "saturated")
        # A call ends: the shard has room again, and says so.
        name = placed[0].json()["session"]
        assert (await client.delete(f"/v1/sessions/{name}", headers=OPERATOR)).status_code == 202
        await wait_until(lambda: daemon.registry.get(name) is None)
        assert (await client.get("/readyz")).status_code == 200


async def test_always_on_sessions_alone_never_make_a_daemon_unready(tmp_path: Path) -> None:
    # No admission section and no webhook: the default cap (10) is for sessions started
    # from outside; eleven always-on sessions are ready, and so is the daemon.
    names = tuple(f"desk-{i:02d}" for i in range(DEFAULT_MAX_SESSIONS + 1))
    async with running_daemon(tmp_path, inbound=False, sessions=names) as (daemon, client):
        await wait_until(lambda: all(states(daemon).get(n) is SessionState.READY for n in names))
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (200, "ready")
        assert daemon.admission.active == 0


async def test_a_session_on_demand_gets_its_visitor_a_token(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True, sessions=("lobby",)) as (daemon, client):
        request = {
            "template": "call",
            "room": "web-visit-1",
            "visitor": {"identity": "visitor-7", "name": "Ada"},
        }
        started = await client.post("/v1/sessions", json=request, headers=DIALLER)
        assert started.status_code == 202
        body = started.json()
        name = body["session"]
        assert body["room"] == "web-visit-1"
        livekit = body["livekit"]
        assert (livekit["room"], livekit["identity"]) == ("web-visit-1", "visitor-7")
        assert livekit["url"] == "http://localhost:7880"
        assert livekit["token"].count(".") == 2  # a JWT
        await wait_until(lambda: states(daemon).get(name) is SessionState.READY)
        row = daemon.registry.get(name)
        assert row is not None
        assert (row.origin, row.room) == ("on_demand", "web-visit-1")
        # One room, one session: a second request for it is refused.
        again = await client.post("/v1/sessions", json=request, headers=DIALLER)
        assert again.status_code == 409
        # A template with no LiveKit room has no room for a visitor.
        voiceless = await client.post(
            "/v1/sessions",
            json={"template": "voice", "visitor": {"identity": "v"}},
            headers=DIALLER,
        )
        assert voiceless.status_code == 422
        plain = await client.post("/v1/sessions", json={"template": "voice"}, headers=DIALLER)
        assert plain.status_code == 202
        assert plain.json()["room"] is None
        assert plain.json()["livekit"] is None


@pytest.mark.parametrize(
    ("options", "outcome"),
    [
        (EmulatorOptions(sip_answer=False), "no_answer"),
        (EmulatorOptions(sip=False), "dial_failed"),
    ],
)
async def test_an_unanswered_or_refused_call_fails_and_ends(
    tmp_path: Path, options: EmulatorOptions, outcome: str
) -> None:
    async with open_emulator(options) as emulator:
        text = daemon_config(api=True, sessions=(), inbound=False)
        text = re.sub(r"  emulator: \{.*\}\n", f"  url: {emulator.url}\n", text)
        text = text.replace("outbound:\n", "outbound:\n  answer_timeout_s: 0.5\n")
        path = tmp_path / "saynad.yaml"
        path.write_text(text)
        async with (
            daemon_in_process(path) as daemon,
            httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=HANG_S) as client,
        ):
            placed = await client.post(
                "/v1/calls",
                json={"template": "call", "to_phone_number": "+15551234567"},
                headers=DIALLER,
            )
            assert placed.status_code == 202
            name = placed.json()["session"]
            with capture_logs(processors=[merge_contextvars]) as logs:
                await wait_until(lambda: daemon.registry.get(name) is None)
            row = (await client.get(f"/v1/sessions/{name}", headers=READER)).json()
            assert row["state"] == "stopped"
            assert (row["call"]["state"], row["call"]["reason"]) == ("failed", outcome)
            metrics = (await client.get("/metrics")).text
        counted = samples(metrics, "saynad_outbound_calls_total")
        assert counted[(("outcome", outcome),)] == 1
        assert counted[(("outcome", "answered"),)] == 0
        ended = next(line for line in logs if line["event"] == "session ended")
        assert ended["reason"] == outcome.replace("_", " ")
        assert daemon.admission.active == 0


def test_an_http_agent_hears_the_requests_variables() -> None:
    from saynad.actors.behaviour import SessionIdentity
    from saynad.actors.behaviours.agent import AgentRequest, Turn
    from saynad.actors.behaviours.backends import HttpBackend

    turn = Turn(text="hello", index=1, ended_at=0.0)
    called = SessionIdentity(
        name="call-1", template="call", origin="outbound", variables={"name": "Ada"}
    )
    plain = SessionIdentity(name="lobby", template="voice", origin="config")
    body = HttpBackend.body(AgentRequest(turn=turn, history=(), identity=called))
    assert body["variables"] == {"name": "Ada"}
    assert "variables" not in HttpBackend.body(AgentRequest(turn=turn, history=(), identity=plain))


def test_variables_fill_the_templates_lines() -> None:
    from saynad.actors.plan import CallRecord, build_plan, fill_variables
    from saynad.config import load_config_text

    assert fill_variables("Hi {name}, {unknown} { name }", {"name": "Ada"}) == (
        "Hi Ada, {unknown} { name }"
    )
    config = load_config_text(
        "templates:\n"
        "  reminder:\n"
        "    audio: false\n"
        "    livekit: {}\n"
        "    outbound: true\n"
        "    behaviours:\n"
        "      end: {goodbye_text: 'Bye {name}'}\n"
    )
    spec = config.admitted_session("call-1", "reminder", origin="outbound", room_name="r")
    plan = build_plan(spec, url="ws://x", api_key=None, call=CallRecord(variables={"name": "Ada"}))
    assert plan.end.goodbye_text == "Bye Ada"
    assert plan.identity.variables == {"name": "Ada"}
    assert plan.end.on_participant_disconnected  # a call ends when the callee hangs up


async def test_refusals_are_logged_at_most_once_a_second_per_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from prometheus_client import CollectorRegistry

    from saynad.http_api import ApiRoutes
    from saynad.observability.metrics import Metrics

    class Surface:
        # Only what a refused request reaches: the tokens and the metrics.
        reads_need_token = True
        metrics = Metrics(CollectorRegistry(), runtime_collectors=False)

        def api_tokens(self) -> tuple[object, ...]:
            from saynad.config import load_config_text

            return load_config_text(
                "http:\n  tokens:\n    - {name: a, token: '${env:T}', scopes: [read]}\n",
                env={"T": "a-token-of-the-test-0123"},
            ).http.api_tokens()

    async def no_body(limit: int) -> bytes:
        return b""

    routes = ApiRoutes(Surface())  # type: ignore[arg-type]
    with capture_logs() as logs:
        for _ in range(30):
            answer = await routes.answer("GET", "/v1/sessions", [], no_body)
            assert answer.status == 401
        await trio.sleep(1.5)
        await routes.answer("GET", "/v1/sessions", [], no_body)
    lines = [line for line in logs if line["event"] == "api request refused"]
    assert [line["not_logged"] for line in lines] == [0, 29]
    text = Surface.metrics.registry
    assert (
        text.get_sample_value(
            "saynad_api_requests_total", {"route": "read", "outcome": "unauthorized"}
        )
        == 31
    )


async def test_the_call_center_example_dials_with_its_variables_and_scoped_tokens(
    tmp_path: Path,
) -> None:
    # The shipped example as an operator installs it, on the embedded emulator instead of
    # sayna.example.com, its files under tmp_path instead of /var/lib/saynad.
    text = read_shipped(example_file("call-center")).decode()
    server = "  url: https://sayna.example.com\n  api_key: ${credential:sayna-api-key}\n"
    assert server in text
    text = text.replace(server, "  emulator: {}\n").replace("/var/lib/saynad", str(tmp_path))
    text = text.replace('listen: "127.0.0.1:9464"', 'listen: "127.0.0.1:0"')
    path = tmp_path / "saynad.yaml"
    path.write_text(text)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    tokens = {}
    for name in ("api-campaigns", "api-operator", "api-dashboard", "sip-webhook-secret"):
        tokens[name] = {"authorization": f"Bearer {name}-0123456789abcdef"}
        (credentials / name).write_text(f"{name}-0123456789abcdef\n")
    (credentials / "agent-token").write_text("Bearer agent\n")
    campaigns, operator, dashboard = (
        tokens[f"api-{n}"] for n in ("campaigns", "operator", "dashboard")
    )
    async with (
        daemon_in_process(path, env={"CREDENTIALS_DIRECTORY": str(credentials)}) as daemon,
        httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=HANG_S) as client,
    ):
        call = {
            "template": "reminder",
            "to_phone_number": "+15551234567",
            "variables": {"name": "Ada", "day": "Tuesday"},
        }
        assert (await client.post("/v1/calls", json=call, headers=dashboard)).status_code == 403
        placed = await client.post("/v1/calls", json=call, headers=campaigns)
        assert placed.status_code == 202
        name = placed.json()["session"]
        await wait_until(lambda: len(emulator_calls(daemon)) == 1)
        assert emulator_calls(daemon)[0]["from_phone_number"] == "+15105550100"
        assert daemon.emulator is not None
        wire = daemon.emulator.state.wire_log
        greeting = "Hello Ada, this is a reminder of your appointment on Tuesday."
        await wait_until(lambda: any(greeting in frame for frame in wire))
        row = (await client.get(f"/v1/sessions/{name}", headers=dashboard)).json()
        assert (row["template"], row["call"]["state"]) == ("reminder", "answered")
        speak = f"/v1/sessions/{name}/speak"
        assert (await client.post(speak, json={"text": "x"}, headers=campaigns)).status_code == 403
        hung = await client.post(f"/v1/sessions/{name}/hangup", headers=operator)
        assert hung.status_code == 202
        await wait_until(lambda: daemon.registry.get(name) is None)
        assert any("Thank you Ada. Goodbye!" in frame for frame in wire)
