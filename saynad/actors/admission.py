"""Admission: which sessions started from outside may run, and how many at once.

Every session that does not come from the configuration's ``sessions`` list passes
through one :class:`Admission`, whatever asked for it: a verified SIP webhook (origin
``inbound``), an outbound call (``outbound``, ``POST /v1/calls``) or a session asked for
over the API (``on_demand``, ``POST /v1/sessions``). They are admitted the same way,
against the same rules::

    request ─► once? ─► closed? ─► full? ─► duplicate? ─► reserve ─► supervisor.start_now
               replay    draining   saturated  duplicate                  │
                                                                          ▼
    session ends ─► release(name) ◄──── the child runs, carrying its Ticket

- **Capacity**: at most ``max_sessions`` admitted sessions at a time, all origins
  together (``admission.max_sessions``; its older name ``inbound.sip_webhook.max_sessions``
  is still read). The check and the reservation of the slot happen with no checkpoint in
  between (trio runs one task at a time), so concurrent requests never admit more than
  the limit; the slot is released when the session ends.
- **Draining**: once :meth:`Admission.close` is called (the daemon drains), or while the
  supervisor does not admit, every request is refused.
- **Duplicates**: a request for a session name already admitted or running is refused,
  and so is an API request for a LiveKit room another session holds (the server deletes
  a room when its session ends: two sessions cannot share one).
- **Claims**: a webhook's event id is claimed by the webhook verifier as it verifies it
  (its replay cache); a refused or failed admission forgets the claim so a re-delivery
  can be admitted, and the ids of accepted webhooks stay claimed when a reload builds a
  new verifier (new secrets), so a replay across the reload is still refused.
- **Idempotency**: an API request may carry an ``Idempotency-Key``
  (:class:`IdempotencyKeys`). A retry with the same key and the same request gets the
  first request's answer (the same session, ``replayed``), never a second session; while
  the first is still being answered the retry waits for it. The same key with another
  request is refused (``conflict``). Keys are remembered per token holder and origin for
  ``admission.idempotency_ttl_s`` (24 h by default), at most
  ``admission.idempotency_max_keys`` (10,000; the oldest are forgotten first). A refused
  request leaves no key behind: its retry is a new request.

What a session needs from its request (the caller, the callee, the SIP headers, the
room, the variables, the number to dial, the longest it may last) is frozen into a
:class:`Ticket` that the child spec carries to the session's runner: nothing is looked
up on the side. An outbound call's progress (dialing, ringing, answered, failed, ended)
is a :class:`CallStatus` kept here while the session runs and for a while after it
ended (:data:`ENDED_KEPT` of them), so ``/sessions/{name}`` still tells its outcome.

Session names come from one function, :func:`temporary_session_name`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import msgspec
import structlog
import trio

from saynad.actors.behaviours.dialler import CALL_OUTCOMES, CallStatus, Dial
from saynad.actors.plan import CallRecord, child_for
from saynad.actors.supervisor import Child, Supervisor
from saynad.api import CallRequest, LiveKitAccess, SessionRequest, phone_problem
from saynad.config import Config, Origin, SipWebhookSettings
from saynad.errors import WebhookReplayError
from saynad.protocol.rest import SipCallSipConfig
from saynad.protocol.webhooks import (
    DEFAULT_REPLAY_CACHE_SIZE,
    VerifiedSipWebhook,
    WebhookVerifier,
)

__all__ = [
    "CALL_OUTCOMES",
    "ENDED_KEPT",
    "Admission",
    "CallStatus",
    "Dial",
    "IdempotencyKey",
    "IdempotencyKeys",
    "Reason",
    "Ticket",
    "Verdict",
    "inbound_session_name",
    "temporary_session_name",
]

log = structlog.get_logger("saynad.daemon")

Reason = Literal[
    "accepted",
    "draining",
    "saturated",
    "duplicate",
    "not_configured",
    "conflict",
    "invalid",
    "upstream",
]

ENDED_KEPT: Final = 1000
"""How many ended admitted sessions ``/sessions/{name}`` still knows (the oldest go first)."""


@dataclass(frozen=True)
class Verdict:
    """What :class:`Admission` decided.

    ``reason``: ``accepted``, ``draining`` (shutting down), ``saturated``
    (``max_sessions`` reached), ``duplicate`` (a session of that name runs, or its room
    is in use), ``not_configured`` (nothing admits that origin), ``conflict`` (the
    ``Idempotency-Key`` was used for another request), ``invalid`` (the request cannot
    be served: ``detail`` says why) or ``upstream`` (Sayna refused what the request
    needed: ``detail``). ``replayed``: the answer of an earlier request with the same
    ``Idempotency-Key``. ``livekit``: a visitor's token, when one was asked for.
    """

    accepted: bool
    reason: Reason
    session: str | None = None
    detail: str | None = None
    room: str | None = None
    replayed: bool = False
    livekit: LiveKitAccess | None = None


@dataclass(frozen=True)
class Ticket:
    """What an admitted session was started for, carried by its child spec.

    ``origin`` (``inbound``, ``outbound``, ``on_demand``), ``key`` (the request's
    identity within its origin: a webhook's event id, a generated id), ``call`` (who
    called whom, SIP headers, room, variables), ``max_duration_s`` (the origin's cap on
    the session's length) and ``dial`` (the number an outbound session dials).
    """

    origin: str
    key: str
    call: CallRecord | None = None
    max_duration_s: float | None = None
    dial: Dial | None = None


_NAME_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
_PREFIXES: Final[Mapping[str, str]] = {"inbound": "sip", "outbound": "call", "on_demand": "api"}


def temporary_session_name(origin: str, key: str) -> str:
    """The name of a session admitted from ``origin`` for ``key``: ``sip-<event id>``,
    ``call-<id>``, ``api-<id>``; made safe for logs, metrics and file names.

    The one place such names are made. LiveKit ids (``EV_…``) and generated ids pass
    unchanged; any other character becomes ``_`` and a short hash of the original keeps
    distinct keys distinct.
    """
    safe = _NAME_UNSAFE.sub("_", key)
    if safe != key or len(safe) > 100:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe[:100]}-{digest}"
    return f"{_PREFIXES[origin]}-{safe}"


def inbound_session_name(event_id: str) -> str:
    """``sip-<event id>``: :func:`temporary_session_name` for a SIP webhook."""
    return temporary_session_name("inbound", event_id)


def _new_key() -> str:
    return secrets.token_hex(8)


# --------------------------------------------------------------------------- idempotency


@dataclass(frozen=True)
class IdempotencyKey:
    """An ``Idempotency-Key`` as admission keys it: per token holder (``client``) and
    origin, with a ``fingerprint`` of the request it came with."""

    client: str
    origin: str
    key: str
    fingerprint: str

    @staticmethod
    def of(client: str, origin: str, key: str, request: msgspec.Struct) -> IdempotencyKey:
        """The key ``key`` of ``client``'s request ``request`` (fingerprinted in a
        canonical encoding: the same fields in another order are the same request)."""
        canonical = msgspec.json.encode(request, order="sorted")
        return IdempotencyKey(client, origin, key, hashlib.sha256(canonical).hexdigest())


@dataclass(eq=False)
class _Remembered:
    fingerprint: str
    expires_at: float
    done: trio.Event = field(default_factory=trio.Event)
    verdict: Verdict | None = None


class IdempotencyKeys:
    """The ``Idempotency-Key`` values admission remembers: each for ``ttl_s`` (trio's
    clock), at most ``capacity`` of them (the oldest forgotten first)."""

    def __init__(self, ttl_s: float, capacity: int) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._keys: OrderedDict[tuple[str, str, str], _Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def configure(self, ttl_s: float, capacity: int) -> None:
        """New limits (a reload); a smaller capacity forgets the oldest at once."""
        self.ttl_s, self.capacity = ttl_s, capacity
        self._expire(trio.current_time())

    async def once(self, key: IdempotencyKey, attempt: Callable[[], Awaitable[Verdict]]) -> Verdict:
        """``attempt()``'s verdict, unless ``key`` has one already: then that one,
        ``replayed`` (waiting for it while the first attempt is under way). Only an
        accepted verdict is remembered."""
        slot = (key.client, key.origin, key.key)
        while True:
            self._expire(trio.current_time())
            known = self._keys.get(slot)
            if known is None:
                break
            if known.fingerprint != key.fingerprint:
                return Verdict(
                    False,
                    "conflict",
                    detail="this Idempotency-Key was used for a different request",
                )
            if known.verdict is not None:
                return replace(known.verdict, replayed=True)
            await known.done.wait()  # the first attempt is under way: its answer is ours
        entry = _Remembered(key.fingerprint, trio.current_time() + self.ttl_s)
        self._keys[slot] = entry
        self._expire(trio.current_time())
        verdict: Verdict | None = None
        try:
            verdict = await attempt()
        finally:
            if verdict is not None and verdict.accepted:
                entry.verdict = verdict
            elif self._keys.get(slot) is entry:
                del self._keys[slot]  # refused or failed: the retry is a new request
            entry.done.set()
        return verdict

    def _expire(self, now: float) -> None:
        keys = self._keys
        while keys:
            slot, entry = next(iter(keys.items()))
            if entry.expires_at > now and len(keys) <= self.capacity:
                break
            del keys[slot]
            entry.done.set()


def _verifier_for(hook: SipWebhookSettings | None) -> WebhookVerifier | None:
    if hook is None:
        return None
    return WebhookVerifier(
        [secret.reveal() for secret in hook.secrets],
        tolerance_s=hook.tolerance_s,
        max_body_bytes=hook.max_body_bytes,
    )


def _verifier_key(hook: SipWebhookSettings | None) -> Hashable:
    if hook is None:
        return None
    return (hook.secrets, hook.tolerance_s, hook.max_body_bytes)


class Admission:
    """The one gate for sessions started from outside. See the module docstring.

    Build it with the configuration, :meth:`open` it on the running supervisor,
    :meth:`configure` it again at every reload, :meth:`close` it when draining.
    ``on_outcome`` hears every outbound call's outcome once (:data:`CALL_OUTCOMES`);
    ``wall_clock`` stamps the calls' progress.
    """

    def __init__(
        self,
        config: Config,
        *,
        on_outcome: Callable[[str], None] = lambda outcome: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_sessions: int = config.max_sessions
        """The cap on admitted sessions, every origin together."""
        self.verifier: WebhookVerifier | None = None
        """Verifies (and claims) SIP webhooks; None without ``inbound.sip_webhook``."""
        self.keys = IdempotencyKeys(
            config.admission.idempotency_ttl_s, config.admission.idempotency_max_keys
        )
        """The remembered ``Idempotency-Key`` values."""
        self._hook: SipWebhookSettings | None = None
        self._config = config
        self._supervisor: Supervisor | None = None
        self._closed = False
        self._on_outcome = on_outcome
        self._wall_clock = wall_clock
        # Admitted sessions not yet ended, by name: the capacity count.
        self._active: dict[str, Child] = {}
        # LiveKit rooms of the admitted sessions started over the API, and their session.
        self._rooms: dict[str, str] = {}
        # Outbound calls by session name, while they run and (ENDED_KEPT) after.
        self._calls: dict[str, CallStatus] = {}
        # The last rows of ended admitted sessions, by name (the oldest first).
        self._ended: OrderedDict[str, dict[str, object]] = OrderedDict()
        # Recently accepted webhooks: their ids stay claimed across a new verifier.
        self._accepted: deque[VerifiedSipWebhook] = deque(maxlen=DEFAULT_REPLAY_CACHE_SIZE)
        self.listeners: list[Callable[[], None]] = []
        """Called (synchronously, no arguments) whenever :attr:`accepting` or
        :attr:`active` may have changed: a session admitted or ended, a reload, the drain."""
        self.configure(config)

    # ------------------------------------------------------------------ lifecycle

    def configure(self, config: Config) -> None:
        """Take ``config``'s limits and webhook settings (at start and every reload).

        A new verifier is built only when the webhook's secrets or limits changed; the
        event ids of recently accepted webhooks are claimed in it again.
        """
        hook = config.inbound.sip_webhook
        if self.verifier is None or _verifier_key(self._hook) != _verifier_key(hook):
            verifier = _verifier_for(hook)
            if verifier is not None:
                for webhook in self._accepted:
                    with contextlib.suppress(WebhookReplayError):
                        verifier.remember(webhook)
            self.verifier = verifier
        self._hook = hook
        self._config = config
        self.max_sessions = config.max_sessions
        if trio.lowlevel.in_trio_run():
            self.keys.configure(
                config.admission.idempotency_ttl_s, config.admission.idempotency_max_keys
            )
        self._changed()

    def open(self, supervisor: Supervisor) -> None:
        """Admit onto ``supervisor`` from now on."""
        self._supervisor = supervisor
        self._changed()

    def close(self) -> None:
        """Refuse every request from now on (the daemon is draining)."""
        self._closed = True
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # ------------------------------------------------------------------ state

    @property
    def active(self) -> int:
        """Admitted sessions not yet ended."""
        return len(self._active)

    @property
    def accepting(self) -> bool:
        """Whether a request would find the gate open and a free slot."""
        supervisor = self._supervisor
        return (
            not self._closed
            and supervisor is not None
            and supervisor.admitting
            and len(self._active) < self.max_sessions
        )

    def active_by_origin(self) -> dict[str, int]:
        """Admitted sessions not yet ended, by origin."""
        counts = dict.fromkeys(_PREFIXES, 0)
        for child in self._active.values():
            counts[child.origin] = counts.get(child.origin, 0) + 1
        return counts

    def ticket(self, name: str) -> Ticket | None:
        """The ticket of the admitted session ``name`` while it runs."""
        child = self._active.get(name)
        return child.ticket if child is not None and isinstance(child.ticket, Ticket) else None

    def call_status(self, name: str) -> CallStatus | None:
        """The outbound call of session ``name`` (running, or ended recently)."""
        return self._calls.get(name)

    def ended(self, name: str) -> dict[str, object] | None:
        """The last row of the admitted session ``name`` if it ended recently."""
        row = self._ended.get(name)
        if row is None:
            return None
        call = self._calls.get(name)
        return {**row, "call": call.as_json() if call is not None else None}

    def release(
        self, name: str, *, row: Mapping[str, object] | None = None, error: bool = False
    ) -> None:
        """The admitted session ``name`` ended (``error``: abnormally): its slot is free
        again, its call (if any) has its outcome, and ``row`` (its last ``/sessions``
        row) is kept among the :data:`ENDED_KEPT` most recent.

        Admitted sessions are ``temporary`` (never restarted), so their one run ending
        is the session ending.
        """
        child = self._active.pop(name, None)
        if child is None:
            return
        self._changed()
        ticket = child.ticket
        room = ticket.call.room if isinstance(ticket, Ticket) and ticket.call else None
        if room is not None and self._rooms.get(room) == name:
            del self._rooms[room]
        call = self._calls.get(name)
        if call is not None:
            call.ended(error=error)
        if row is not None:
            self._ended[name] = {**row, "state": "stopped", "since": self._wall_clock()}
            self._ended.move_to_end(name)
            while len(self._ended) > ENDED_KEPT:
                old, _ = self._ended.popitem(last=False)
                if old not in self._active:
                    self._calls.pop(old, None)
        elif call is not None and name not in self._ended:
            self._calls.pop(name, None)

    # ------------------------------------------------------------------ admitting

    async def admit(self, name: str, child: Callable[[], Child]) -> Verdict:
        """Start the session ``name`` (``child()`` builds its spec) or say why not.

        The rules every origin shares: closed → ``draining``, full → ``saturated``,
        already admitted or running → ``duplicate``. Never waits for the session.
        """
        supervisor = self._supervisor
        if self._closed or supervisor is None or not supervisor.admitting:
            return Verdict(False, "draining")
        limit = self.max_sessions
        # Check and reserve with no checkpoint in between: exact under concurrency.
        if limit is not None and len(self._active) >= limit:
            return Verdict(False, "saturated")
        if name in self._active or supervisor.running(name):
            return Verdict(False, "duplicate", detail=f"a session called {name!r} runs")
        started = False
        try:
            made = child()
            self._active[name] = made
            started = await supervisor.start_now(made)
        finally:
            if not started:
                self._active.pop(name, None)
        if not started:
            return Verdict(False, "draining" if not supervisor.admitting else "duplicate")
        self._changed()
        return Verdict(True, "accepted", name)

    async def admit_webhook(self, webhook: VerifiedSipWebhook) -> Verdict:
        """Start a temporary session for a verified SIP webhook, or say why not.

        The session joins ``webhook.room.name`` as-is and carries the caller, callee and
        SIP headers. A refusal, or an error, forgets the webhook's event id in the
        verifier so a later re-delivery may be admitted.
        """
        try:
            verdict = await self._admit_webhook(webhook)
        except Exception:
            self._forget(webhook.event_id)
            raise
        if not verdict.accepted:
            self._forget(webhook.event_id)
            return verdict
        verdict = replace(verdict, room=webhook.room.name)
        self._accepted.append(webhook)
        log.info(
            "inbound call admitted",
            session=verdict.session,
            room=webhook.room.name,
            caller=webhook.from_phone_number,
            callee=webhook.to_phone_number,
            sip_host=webhook.sip_host,
            calls=len(self._active),
            max_sessions=self.max_sessions,
        )
        return verdict

    async def _admit_webhook(self, webhook: VerifiedSipWebhook) -> Verdict:
        hook, config = self._hook, self._config
        if hook is None:
            return Verdict(False, "not_configured")
        name = inbound_session_name(webhook.event_id)
        ticket = Ticket(
            origin="inbound",
            key=webhook.event_id,
            call=CallRecord(
                caller=webhook.from_phone_number,
                callee=webhook.to_phone_number,
                sip_headers=webhook.sip_headers or {},
                room=webhook.room.name,
            ),
            max_duration_s=hook.max_duration_s,
        )

        def child() -> Child:
            # The room is used as-is: braces are escaped so that no placeholder of the
            # template syntax is ever rendered in it.
            room = webhook.room.name.replace("{", "{{").replace("}", "}}")
            return child_for(config.inbound_session(name, room_name=room), ticket=ticket)

        return await self.admit(name, child)

    # ------------------------------------------------------------------ the API

    async def admit_call(
        self, request: CallRequest, *, client: str, idempotency_key: str | None = None
    ) -> Verdict:
        """Start a temporary session that joins a room and dials ``request``'s number
        (``outbound``), or say why not. ``client`` names the token holder (idempotency
        keys are theirs)."""
        config = self._config
        template = config.templates.get(request.template)
        if template is None:
            return _unknown_template(request.template, config)
        if not template.outbound:
            return Verdict(
                False,
                "invalid",
                detail=f"template {request.template!r} is not marked outbound: true",
            )
        caller = request.from_phone_number or config.outbound.from_phone_number
        if caller is None:
            return Verdict(
                False,
                "invalid",
                detail="no from_phone_number: give one, or set outbound.from_phone_number",
            )
        for field_name, number in (
            ("to_phone_number", request.to_phone_number),
            ("from_phone_number", caller),
        ):
            problem = phone_problem(field_name, number)
            if problem is not None:
                return Verdict(False, "invalid", detail=problem)
        callee = request.to_phone_number.strip()
        outbound = config.outbound
        sip = outbound.sip
        dial = Dial(
            to=callee,
            from_=caller.strip(),
            participant_name=outbound.participant_name,
            participant_identity=f"sip_{callee}",
            answer_timeout_s=outbound.answer_timeout_s,
            sip=None
            if sip is None
            else SipCallSipConfig(
                outbound_address=sip.outbound_address or msgspec.UNSET,
                auth_username=(sip.auth_username.reveal() if sip.auth_username else msgspec.UNSET),
                auth_password=(sip.auth_password.reveal() if sip.auth_password else msgspec.UNSET),
            ),
        )

        async def attempt() -> Verdict:
            key = _new_key()
            name = temporary_session_name("outbound", key)
            room = request.room if request.room is not None else name
            ticket = Ticket(
                origin="outbound",
                key=key,
                call=CallRecord(
                    caller=dial.from_,
                    callee=dial.to,
                    room=room,
                    variables=request.variables,
                ),
                max_duration_s=config.admission.max_duration_s,
                dial=dial,
            )
            status = CallStatus(
                dial.to, dial.from_, on_outcome=self._on_outcome, wall_clock=self._wall_clock
            )
            verdict = await self._admit_api(name, request.template, "outbound", room, ticket)
            if verdict.accepted:
                self._calls[name] = status
                log.info(
                    "outbound call admitted",
                    session=name,
                    template=request.template,
                    room=room,
                    callee=dial.to,
                    caller=dial.from_,
                    client=client,
                    calls=len(self._active),
                    max_sessions=self.max_sessions,
                )
            return verdict

        return await self._once(client, "outbound", idempotency_key, request, attempt)

    async def admit_session(
        self,
        request: SessionRequest,
        *,
        client: str,
        idempotency_key: str | None = None,
        finish: Callable[[Verdict], Awaitable[Verdict]] | None = None,
    ) -> Verdict:
        """Start a temporary session of ``request.template`` (``on_demand``), or say why
        not. ``finish`` completes an accepted verdict before it is answered and
        remembered (the daemon mints the visitor's LiveKit token there); a refusal it
        returns forgets the idempotency key."""
        config = self._config
        template = config.templates.get(request.template)
        if template is None:
            return _unknown_template(request.template, config)
        if template.livekit is None and (request.room is not None or request.visitor):
            return Verdict(
                False,
                "invalid",
                detail=f"template {request.template!r} joins no LiveKit room "
                "(no livekit section): a room or a visitor makes no sense",
            )

        async def attempt() -> Verdict:
            key = _new_key()
            name = temporary_session_name("on_demand", key)
            room = None
            if template.livekit is not None:
                room = request.room if request.room is not None else name
            ticket = Ticket(
                origin="on_demand",
                key=key,
                call=CallRecord(room=room, variables=request.variables),
                max_duration_s=config.admission.max_duration_s,
            )
            verdict = await self._admit_api(name, request.template, "on_demand", room, ticket)
            if verdict.accepted:
                log.info(
                    "session admitted",
                    session=name,
                    template=request.template,
                    room=room,
                    client=client,
                    calls=len(self._active),
                    max_sessions=self.max_sessions,
                )
                if finish is not None:
                    verdict = await finish(verdict)
            return verdict

        return await self._once(client, "on_demand", idempotency_key, request, attempt)

    async def _once(
        self,
        client: str,
        origin: str,
        key: str | None,
        request: msgspec.Struct,
        attempt: Callable[[], Awaitable[Verdict]],
    ) -> Verdict:
        if key is None:
            return await attempt()
        return await self.keys.once(IdempotencyKey.of(client, origin, key, request), attempt)

    async def _admit_api(
        self, name: str, template: str, origin: Origin, room: str | None, ticket: Ticket
    ) -> Verdict:
        config = self._config
        if room is not None:
            holder = self._rooms.get(room) or next(
                (
                    spec.name
                    for spec in config.sessions
                    if spec.livekit is not None and spec.livekit.room_name == room
                ),
                None,
            )
            if holder is not None:
                return Verdict(
                    False, "duplicate", detail=f"room {room!r} is in use by another session"
                )

        def child() -> Child:
            # The room is used as-is: braces are escaped so that no placeholder of the
            # template syntax is ever rendered in it.
            escaped = None if room is None else room.replace("{", "{{").replace("}", "}}")
            spec = config.admitted_session(name, template, origin=origin, room_name=escaped)
            return child_for(spec, ticket=ticket)

        verdict = await self.admit(name, child)
        if not verdict.accepted:
            return verdict
        if room is not None:
            self._rooms[room] = name
        return replace(verdict, room=room)

    def _forget(self, event_id: str) -> None:
        if self.verifier is not None:
            self.verifier.forget(event_id)


def _unknown_template(name: str, config: Config) -> Verdict:
    known = ", ".join(sorted(config.templates)) or "none"
    return Verdict(False, "invalid", detail=f"unknown template {name!r} (known: {known})")
