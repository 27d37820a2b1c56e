"""Admission: which sessions started from outside may run, and how many at once.

Every session that does not come from the configuration's ``sessions`` list passes
through one :class:`Admission`, whatever asked for it. Today that is a verified SIP
webhook (origin ``inbound``); an outbound call or a session asked for over an API would
be another origin admitted the same way, against the same rules::

    request ─► closed? ─► full? ─► duplicate? ─► reserve ─► supervisor.start_now(child)
               draining   saturated  duplicate                        │
                                                                      ▼
    session ends ─► release(name) ◄──── the child runs, carrying its Ticket

- **Capacity**: at most ``max_sessions`` admitted sessions at a time, all origins
  together (today ``inbound.sip_webhook.max_sessions``). The check and the reservation
  of the slot happen with no checkpoint in between (trio runs one task at a time), so
  concurrent requests never admit more than the limit; the slot is released when the
  session ends.
- **Draining**: once :meth:`Admission.close` is called (the daemon drains), or while the
  supervisor does not admit, every request is refused.
- **Duplicates**: a request for a session name already admitted or running is refused.
- **Claims**: a request's ``key`` identifies it within its origin (a webhook's event
  id). The webhook verifier claims event ids as it verifies them (its replay cache); a
  refused or failed admission forgets the claim so a re-delivery can be admitted, and
  the ids of accepted webhooks stay claimed when a reload builds a new verifier (new
  secrets), so a replay across the reload is still refused. An origin with
  ``Idempotency-Key`` would keep its keys the same way, next to the verifier.

What a session needs from its request (the caller, the callee, the SIP headers, the
room, the longest it may last) is frozen into a :class:`Ticket` that the child spec
carries to the session's runner: nothing is looked up on the side.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Literal

import structlog

from saynad.actors.plan import CallRecord, child_for
from saynad.actors.supervisor import Child, Supervisor
from saynad.config import Config, SipWebhookSettings
from saynad.errors import WebhookReplayError
from saynad.protocol.webhooks import (
    DEFAULT_REPLAY_CACHE_SIZE,
    VerifiedSipWebhook,
    WebhookVerifier,
)

__all__ = [
    "Admission",
    "Reason",
    "Ticket",
    "Verdict",
    "inbound_session_name",
]

log = structlog.get_logger("saynad.daemon")

Reason = Literal["accepted", "draining", "saturated", "duplicate", "not_configured"]


@dataclass(frozen=True)
class Verdict:
    """What :class:`Admission` decided.

    ``reason``: ``accepted``, ``draining`` (shutting down), ``saturated``
    (``max_sessions`` reached), ``duplicate`` (a session of that name runs) or
    ``not_configured`` (nothing admits that origin).
    """

    accepted: bool
    reason: Reason
    session: str | None = None


@dataclass(frozen=True)
class Ticket:
    """What an admitted session was started for, carried by its child spec.

    ``origin`` (``inbound``), ``key`` (the request's identity within its origin: a
    webhook's event id), ``call`` (who called whom, SIP headers, room) and
    ``max_duration_s`` (the origin's cap on the session's length).
    """

    origin: str
    key: str
    call: CallRecord | None = None
    max_duration_s: float | None = None


_NAME_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")


def inbound_session_name(event_id: str) -> str:
    """``sip-<event id>``, made safe for logs, metrics and file names.

    LiveKit ids (``EV_…``) pass unchanged; any other character becomes ``_`` and a short
    hash of the original keeps distinct ids distinct.
    """
    safe = _NAME_UNSAFE.sub("_", event_id)
    if safe != event_id or len(safe) > 100:
        digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe[:100]}-{digest}"
    return f"sip-{safe}"


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
    """

    def __init__(self, config: Config) -> None:
        self.max_sessions: int | None = None
        """The cap on admitted sessions; None while no origin is configured."""
        self.verifier: WebhookVerifier | None = None
        """Verifies (and claims) SIP webhooks; None without ``inbound.sip_webhook``."""
        self._hook: SipWebhookSettings | None = None
        self._config = config
        self._supervisor: Supervisor | None = None
        self._closed = False
        # Admitted sessions not yet ended, by name: the capacity count.
        self._active: dict[str, Child] = {}
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
        self.max_sessions = hook.max_sessions if hook is not None else None
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
            and (self.max_sessions is None or len(self._active) < self.max_sessions)
        )

    def ticket(self, name: str) -> Ticket | None:
        """The ticket of the admitted session ``name`` while it runs."""
        child = self._active.get(name)
        return child.ticket if child is not None and isinstance(child.ticket, Ticket) else None

    def release(self, name: str) -> None:
        """The admitted session ``name`` ended: its slot is free again.

        Admitted sessions are ``temporary`` (never restarted), so their one run ending
        is the session ending.
        """
        if self._active.pop(name, None) is not None:
            self._changed()

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
            return Verdict(False, "duplicate")
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

    def _forget(self, event_id: str) -> None:
        if self.verifier is not None:
            self.verifier.forget(event_id)
