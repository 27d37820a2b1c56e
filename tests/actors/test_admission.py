"""Admission on its own: a real supervisor (a runner that records what it is handed), a
real webhook verifier, a real configuration; no daemon, no HTTP, no clock but trio's."""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from saynad.actors.admission import Admission, Ticket, inbound_session_name
from saynad.actors.plan import CallRecord, child_for
from saynad.actors.supervisor import Child, ChildControl, Supervisor
from saynad.config import Config, load_config_text
from saynad.errors import WebhookReplayError
from saynad.protocol.webhooks import (
    SipWebhook,
    VerifiedSipWebhook,
    WebhookParticipant,
    WebhookRoom,
    encode_webhook_payload,
    sign_webhook,
)

SECRET = "admission-secret-0123456789"
ROTATED = "admission-rotated-0123456789"


def config(*, secret: str = "OLD", max_sessions: int = 2) -> Config:
    text = f"""\
        inbound:
          sip_webhook:
            template: call
            secrets: ["${{env:{secret}}}"]
            max_sessions: {max_sessions}
            max_duration_s: 90
        templates:
          call:
            audio: false
            livekit: {{}}
        """
    return load_config_text(textwrap.dedent(text), env={"OLD": SECRET, "NEW": ROTATED})


class Runner:
    """Records the children it runs; each runs until its drain or ``end(name)``."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.children: dict[str, Child] = {}
        self._end: dict[str, trio.Event] = {}

    async def __call__(self, child: Child, control: ChildControl) -> None:
        self.children[child.name] = child
        self._end[child.name] = trio.Event()
        control.ready()
        try:
            with trio.move_on_after(3600):
                await self._end[child.name].wait()
        finally:
            if child.ticket is not None:
                self.admission.release(child.name)

    def end(self, name: str) -> None:
        self._end[name].set()


@asynccontextmanager
async def admitting(cfg: Config) -> AsyncIterator[tuple[Admission, Runner, Supervisor]]:
    admission = Admission(cfg)
    runner = Runner(admission)
    async with trio.open_nursery() as nursery:
        supervisor = await nursery.start(Supervisor(runner).run)
        admission.open(supervisor)
        yield admission, runner, supervisor
        nursery.cancel_scope.cancel()


def delivery(event_id: str, *, secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    webhook = SipWebhook(
        participant=WebhookParticipant(name="Caller", identity="sip_+1555", sid="PA_1"),
        room=WebhookRoom(name=f"sip-{{room}}-{event_id}", sid="RM_1"),
        from_phone_number="+1555",
        to_phone_number="+1666",
        room_prefix="sip-",
        sip_host="sip.example.com",
        sip_headers={"x-customer": "acme"},
    )
    body = encode_webhook_payload(webhook)
    return sign_webhook(secret, body, timestamp=int(time.time()), event_id=event_id), body


def verified(admission: Admission, event_id: str) -> VerifiedSipWebhook:
    assert admission.verifier is not None
    headers, body = delivery(event_id)
    return admission.verifier.verify(headers, body)


async def test_the_ticket_rides_in_the_child_spec_to_the_runner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with admitting(config()) as (admission, runner, _):
        verdict = await admission.admit_webhook(verified(admission, "EV_1"))
        assert (verdict.accepted, verdict.reason, verdict.session) == (True, "accepted", "sip-EV_1")
        await trio.sleep(1)
        child = runner.children["sip-EV_1"]
        assert child.origin == "inbound"
        assert child.ticket == Ticket(
            origin="inbound",
            key="EV_1",
            call=CallRecord(
                caller="+1555",
                callee="+1666",
                sip_headers={"x-customer": "acme"},
                room="sip-{room}-EV_1",
            ),
            max_duration_s=90,
        )
        hash(child)  # a child spec stays hashable with its ticket
        # The room is used as sent: the template's placeholders are never rendered in it.
        assert child.spec.livekit.room_name == "sip-{room}-EV_1"  # type: ignore[attr-defined]
        assert admission.ticket("sip-EV_1") == child.ticket
        runner.end("sip-EV_1")
        await trio.sleep(1)
        assert admission.ticket("sip-EV_1") is None
        assert admission.active == 0


async def test_capacity_is_exact_under_concurrency_and_shared_by_every_origin(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with admitting(config(max_sessions=3)) as (admission, runner, _):
        # Another origin, admitted through the same gate, takes one of the three slots.
        other = await admission.admit(
            "api-1",
            lambda: child_for(
                config().inbound_session("api-1", room_name="r"),
                ticket=Ticket(origin="api", key="k1"),
            ),
        )
        assert other.accepted
        verdicts = []

        async def one(event_id: str) -> None:
            verdicts.append(await admission.admit_webhook(verified(admission, event_id)))

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(one, f"EV_{i}")
        assert sorted(v.reason for v in verdicts) == ["accepted"] * 2 + ["saturated"] * 4
        assert admission.active == 3
        assert not admission.accepting
        await trio.sleep(1)
        runner.end("api-1")
        await trio.sleep(1)
        assert admission.accepting
        assert (await admission.admit_webhook(verified(admission, "EV_late"))).accepted


async def test_duplicates_and_draining_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with admitting(config()) as (admission, _, _):
        first = verified(admission, "EV_dup")
        assert (await admission.admit_webhook(first)).accepted
        # The same event id again, as if the verifier had let it through: the name runs.
        assert (await admission.admit_webhook(first)).reason == "duplicate"
        admission.close()
        assert (await admission.admit_webhook(verified(admission, "EV_after"))).reason == (
            "draining"
        )
        assert not admission.accepting
    closed = Admission(config())  # never opened on a supervisor: nothing to admit onto
    assert (await closed.admit_webhook(verified(closed, "EV_x"))).reason == "draining"


async def test_a_refused_webhook_is_forgotten_and_an_accepted_one_stays_claimed_across_new_secrets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with admitting(config(max_sessions=1)) as (admission, _, _):
        assert (await admission.admit_webhook(verified(admission, "EV_in"))).accepted
        assert (await admission.admit_webhook(verified(admission, "EV_full"))).reason == (
            "saturated"
        )
        verified(admission, "EV_full")  # forgotten: a re-delivery verifies again

        old = admission.verifier
        admission.configure(config(secret="NEW", max_sessions=1))
        assert admission.verifier is not old  # new secrets, a new verifier
        assert admission.verifier is not None
        headers, body = delivery("EV_in", secret=ROTATED)
        with pytest.raises(WebhookReplayError):
            admission.verifier.verify(headers, body)

        same = admission.verifier
        admission.configure(config(secret="NEW", max_sessions=4))
        assert admission.verifier is same  # only the capacity changed
        assert admission.max_sessions == 4


async def test_an_error_while_admitting_forgets_the_claim(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admitting(config()) as (admission, _, _):

        async def broken(name: str, child: object) -> object:
            raise RuntimeError("boom")

        monkeypatch.setattr(admission, "admit", broken)
        with pytest.raises(RuntimeError):
            await admission.admit_webhook(verified(admission, "EV_bug"))
        verified(admission, "EV_bug")  # not left claimed


def test_webhooks_are_not_configured_without_a_hook() -> None:
    cfg = load_config_text("templates: {}\n")
    admission = Admission(cfg)
    assert admission.verifier is None
    assert admission.max_sessions == 10  # the default cap, whatever asks
    assert inbound_session_name("EV_1") == "sip-EV_1"
