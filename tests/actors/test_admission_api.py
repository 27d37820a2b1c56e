"""Admission of API requests on trio's virtual clock: idempotency keys, rooms, names,
an outbound call's progress. A real supervisor runs the admitted children."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from saynad.actors.admission import (
    Admission,
    IdempotencyKey,
    IdempotencyKeys,
    Verdict,
    temporary_session_name,
)
from saynad.actors.behaviours.dialler import CallStatus
from saynad.actors.supervisor import Child, ChildControl, Supervisor
from saynad.api import CallRequest, SessionRequest
from saynad.config import Config, load_config_text


def config(*, max_sessions: int = 3, ttl_s: float = 60, max_keys: int = 100) -> Config:
    text = f"""\
        admission: {{max_sessions: {max_sessions}, idempotency_ttl_s: {ttl_s},
                     idempotency_max_keys: {max_keys}}}
        outbound: {{from_phone_number: "+15550001000", answer_timeout_s: 5}}
        templates:
          dial:
            audio: false
            livekit: {{}}
            outbound: true
          web:
            audio: false
            livekit: {{}}
          plain:
            audio: false
        """
    return load_config_text(textwrap.dedent(text))


@asynccontextmanager
async def admitting(cfg: Config) -> AsyncIterator[tuple[Admission, dict[str, Child]]]:
    outcomes: list[str] = []
    admission = Admission(cfg, on_outcome=outcomes.append, wall_clock=trio.current_time)
    children: dict[str, Child] = {}

    async def runner(child: Child, control: ChildControl) -> None:
        children[child.name] = child
        control.ready()
        try:
            await trio.sleep_forever()
        finally:
            admission.release(child.name, row={"name": child.name})

    async with trio.open_nursery() as nursery:
        supervisor = await nursery.start(Supervisor(runner).run)
        admission.open(supervisor)
        yield admission, children
        nursery.cancel_scope.cancel()


CALL = CallRequest(template="dial", to_phone_number="+15551234567")


async def test_keys_expire_after_their_ttl(autojump_clock: trio.testing.MockClock) -> None:
    async with admitting(config(ttl_s=60)) as (admission, _):
        first = await admission.admit_call(CALL, client="ops", idempotency_key="k")
        await trio.sleep(30)
        again = await admission.admit_call(CALL, client="ops", idempotency_key="k")
        assert (again.session, again.replayed) == (first.session, True)
        await trio.sleep(31)  # past the TTL: the key is forgotten, a new call is placed
        later = await admission.admit_call(CALL, client="ops", idempotency_key="k")
        assert later.accepted
        assert later.session != first.session
        assert not later.replayed


async def test_the_oldest_keys_go_first_past_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    keys = IdempotencyKeys(ttl_s=3600, capacity=2)

    async def accept() -> Verdict:
        return Verdict(True, "accepted", f"s{len(keys)}")

    for key in ("a", "b", "c"):
        await keys.once(IdempotencyKey.of("ops", "outbound", key, CALL), accept)
    assert len(keys) == 2
    replay = await keys.once(IdempotencyKey.of("ops", "outbound", "b", CALL), accept)
    assert replay.replayed
    fresh = await keys.once(IdempotencyKey.of("ops", "outbound", "a", CALL), accept)
    assert not fresh.replayed  # "a" was forgotten: the oldest


async def test_a_refused_request_leaves_no_key(autojump_clock: trio.testing.MockClock) -> None:
    async with admitting(config(max_sessions=1)) as (admission, _):
        busy = await admission.admit_session(SessionRequest(template="plain"), client="ops")
        assert busy.accepted
        refused = await admission.admit_call(CALL, client="ops", idempotency_key="k")
        assert (refused.accepted, refused.reason) == (False, "saturated")
        assert len(admission.keys) == 0
        admission.release(busy.session or "")
        retried = await admission.admit_call(CALL, client="ops", idempotency_key="k")
        assert retried.accepted
        assert not retried.replayed


async def test_one_room_one_session(autojump_clock: trio.testing.MockClock) -> None:
    async with admitting(config()) as (admission, _):
        first = await admission.admit_session(
            SessionRequest(template="web", room="desk"), client="ops"
        )
        assert (first.accepted, first.room) == (True, "desk")
        second = await admission.admit_call(
            CallRequest(template="dial", to_phone_number="+1555", room="desk"), client="ops"
        )
        assert (second.accepted, second.reason) == (False, "duplicate")
        # A room with braces is used exactly as given, never rendered as a placeholder.
        odd = await admission.admit_session(
            SessionRequest(template="web", room="{session}"), client="ops"
        )
        assert odd.room == "{session}"


def test_names_come_from_one_function() -> None:
    assert temporary_session_name("inbound", "EV_1") == "sip-EV_1"
    assert temporary_session_name("outbound", "0a1b") == "call-0a1b"
    assert temporary_session_name("on_demand", "0a1b") == "api-0a1b"
    odd = temporary_session_name("outbound", "a/b")
    assert odd.startswith("call-a_b-")
    assert odd != temporary_session_name("outbound", "a?b")


def test_a_calls_outcome_is_heard_once() -> None:
    heard: list[str] = []
    status = CallStatus("+1555", "+1556", on_outcome=heard.append, wall_clock=lambda: 1.0)
    status.ringing("SC_1")
    status.answered()
    status.failed("no_answer")  # too late: it was answered
    status.ended(error=False)
    assert (status.state, status.reason, heard) == ("ended", None, ["answered"])
    unanswered = CallStatus("+1555", "+1556", on_outcome=heard.append)
    unanswered.ended(error=True)
    assert (unanswered.state, unanswered.reason) == ("failed", "session_failed")
    assert heard == ["answered", "session_failed"]


async def test_an_outbound_call_carries_what_it_dials(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with admitting(config()) as (admission, children):
        verdict = await admission.admit_call(
            CallRequest(template="dial", to_phone_number=" +15551234567 ", variables={"a": "b"}),
            client="ops",
        )
        assert verdict.session is not None
        await trio.testing.wait_all_tasks_blocked()
        ticket = admission.ticket(verdict.session)
        assert ticket is not None
        assert ticket.dial is not None
        assert (ticket.dial.to, ticket.dial.from_) == ("+15551234567", "+15550001000")
        assert ticket.dial.participant_identity == "sip_+15551234567"
        assert ticket.call is not None
        assert dict(ticket.call.variables) == {"a": "b"}
        assert children[verdict.session].origin == "outbound"
        status = admission.call_status(verdict.session)
        assert status is not None
        assert status.state == "dialing"
        admission.release(verdict.session, row={"name": verdict.session})
        assert status.reason == "cancelled"
        ended = admission.ended(verdict.session)
        assert ended is not None
        assert ended["state"] == "stopped"
