"""The file's shape: the base of every Struct, and the daemon-wide sections.

Every Struct of the configuration derives from :class:`Settings`: frozen, keyword-only,
unknown keys rejected. A field's type says what a value may be and carries its
single-value check (:mod:`saynad.config._values`); ``_problems`` holds the checks
between the fields of one Struct (``initial_s <= max_s``). This module holds the
sections that configure the daemon itself (``sayna``, ``http``, ``logging``,
``runtime``, ``defaults``, ``admission``, ``inbound``, ``outbound``); what a session is
made of (``templates``, ``sessions``) is in :mod:`saynad.config._templates`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Final, Literal

import msgspec

from saynad.config._values import (
    ApiToken,
    HeaderValue,
    ListenAddress,
    Name,
    NonNegativeInt,
    PhoneNumber,
    PositiveInt,
    RestartPolicy,
    SaynaUrl,
    Seconds,
    Secret,
    Text,
    WebhookPath,
    WebhookSecret,
    parse_listen,
)
from saynad.sharding import MAX_SHARDS

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "SCOPES",
    "SECTIONS",
    "AdmissionSettings",
    "ApiTokenSettings",
    "BackoffSettings",
    "Defaults",
    "EmulatorSettings",
    "HttpSettings",
    "InboundSettings",
    "IntensitySettings",
    "KeepaliveSettings",
    "LoggingSettings",
    "OutboundSettings",
    "OutboundSipSettings",
    "Problems",
    "RuntimeSettings",
    "SaynaSettings",
    "Settings",
    "ShardingSettings",
    "SipWebhookSettings",
    "WebhookListenerSettings",
]

SECTIONS: Final = (
    "sayna",
    "http",
    "logging",
    "runtime",
    "sharding",
    "defaults",
    "admission",
    "inbound",
    "outbound",
    "templates",
    "sessions",
)
"""The top-level sections of a configuration file, in the order the docs give them."""

DEFAULT_MAX_SESSIONS: Final = 10
"""The cap on sessions started from outside when neither ``admission.max_sessions`` nor
its old name ``inbound.sip_webhook.max_sessions`` is set."""

Scope = Literal["read", "calls", "control"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "calls", "control")
"""What an API token may be allowed: ``read`` the sessions, place ``calls`` and start
sessions, ``control`` running sessions (speak, transfer, hang up, restart, reload)."""

Problems = Iterator[tuple[tuple[str | int, ...], str]]
"""(path relative to the struct, message) pairs yielded by ``_problems``."""


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the config Structs: frozen, unknown keys rejected, keyword-only.

    ``_problems`` holds the checks between fields of one struct (``initial_s <= max_s``);
    the converter reports them at the struct's path. Checks of a single value sit on its
    type (``Check``), checks across a resolved session in :mod:`saynad.config._checks`,
    checks across sections in the loader.
    """

    def _problems(self) -> Problems:
        return iter(())


class EmulatorSettings(Settings, frozen=True, kw_only=True):
    """``sayna.emulator``: options of the embedded emulator (used when there is no url).

    Each unset option keeps the emulator's own default.
    """

    script: tuple[Text, ...] | None = None
    numbered: bool | None = None
    utterance_ms: PositiveInt | None = None
    interim_ms: PositiveInt | None = None
    tts_ms_per_char: PositiveInt | None = None
    tts_chunk_ms: PositiveInt | None = None

    def _problems(self) -> Problems:
        if self.script is not None and not self.script:
            yield ("script",), "expected at least one transcript line"


class SaynaSettings(Settings, frozen=True, kw_only=True):
    """``sayna``: which server to talk to. No ``url`` runs the embedded emulator."""

    url: SaynaUrl | None = None
    api_key: Secret | None = None
    emulator: EmulatorSettings | None = None

    @property
    def embedded(self) -> bool:
        """True when the daemon starts the emulator itself (no ``url``)."""
        return self.url is None

    def _problems(self) -> Problems:
        if self.url is not None and self.emulator is not None:
            yield (
                ("emulator",),
                "emulator options apply only without sayna.url (the daemon then starts "
                "the emulator); remove one of them",
            )


class _Listening(Settings, frozen=True, kw_only=True):
    """A section with a ``listen`` address."""

    listen: ListenAddress

    @property
    def host(self) -> str:
        """The host part of ``listen`` (brackets removed for IPv6)."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return parse_listen(self.listen)[1]


class WebhookListenerSettings(_Listening, frozen=True, kw_only=True):
    """``http.webhooks``: the SIP webhook route on a listener of its own.

    ``reuse_port``: bind with ``SO_REUSEPORT``, so every shard of one host listens on the
    same port and the kernel spreads the calls between them. ``when_full``: what a shard
    does while it cannot take a call (``max_sessions`` reached, or draining): ``close``
    its listener, so the kernel hands new calls to the other shards (the default with
    ``reuse_port``), or ``refuse`` them with 503 (the default without).
    """

    listen: ListenAddress
    reuse_port: bool = False
    when_full: Literal["close", "refuse"] | None = None

    @property
    def close_when_full(self) -> bool:
        """True when a full or draining shard stops listening instead of answering 503."""
        return self.when_full == "close" or (self.when_full is None and self.reuse_port)

    def _problems(self) -> Problems:
        if self.when_full == "close" and not self.reuse_port:
            yield (
                ("when_full",),
                "close needs reuse_port: true (a listener nobody shares would only turn "
                "callers away)",
            )
        if self.reuse_port and self.port == 0:
            yield (
                ("listen",),
                "a shared port must be given (port 0 picks a different one each time)",
            )


class ApiTokenSettings(Settings, frozen=True, kw_only=True):
    """One entry of ``http.tokens``: a bearer token of the HTTP API and what it may do.

    ``name`` identifies the token's holder in logs and in idempotency keys (never the
    token itself).
    """

    name: Name
    token: ApiToken
    scopes: tuple[Scope, ...]

    def _problems(self) -> Problems:
        if not self.scopes:
            yield ("scopes",), f"expected at least one scope (of: {', '.join(SCOPES)})"
        elif len(set(self.scopes)) != len(self.scopes):
            yield ("scopes",), "a scope is listed twice"


class HttpSettings(_Listening, frozen=True, kw_only=True):
    """``http``: the daemon's own HTTP server (metrics, health, sessions, webhooks, API).

    ``control_token`` is the older form of one token with the ``control`` scope; it
    stays valid (:meth:`api_tokens` turns it into that token, named ``control_token``).
    ``port_per_shard``: shard I of a sharded fleet listens on ``listen``'s port + I
    (several shards on one host); ``webhooks``: the SIP webhook on its own listener.
    """

    listen: ListenAddress = "127.0.0.1:9464"
    control_token: Secret | None = None
    tokens: tuple[ApiTokenSettings, ...] = ()
    port_per_shard: bool = False
    webhooks: WebhookListenerSettings | None = None

    def api_tokens(self) -> tuple[ApiTokenSettings, ...]:
        """Every token the API accepts: ``tokens`` and, when set, ``control_token``."""
        if self.control_token is None:
            return self.tokens
        legacy = ApiTokenSettings(
            name="control_token", token=self.control_token, scopes=("control",)
        )
        return (*self.tokens, legacy)

    @property
    def reads_need_token(self) -> bool:
        """Reading the sessions needs a ``read`` token once ``tokens`` is set; with no
        tokens, or only ``control_token``, reads stay open as they always were."""
        return bool(self.tokens)

    def _problems(self) -> Problems:
        names: set[str] = set()
        values: dict[str, int] = {}
        for index, entry in enumerate(self.tokens):
            if entry.name in names or entry.name == "control_token":
                yield ("tokens", index, "name"), f"duplicate token name {entry.name!r}"
            names.add(entry.name)
            value = entry.token.reveal()
            if value in values:
                yield (
                    ("tokens", index, "token"),
                    f"the same token as tokens[{values[value]}]; give each holder its own",
                )
            values[value] = index
        if self.control_token is not None and self.control_token.reveal() in values:
            yield (
                ("control_token",),
                "the same token as an entry of tokens; give that entry the control scope instead",
            )
        hook = self.webhooks
        if hook is not None and hook.port != 0 and (hook.host, hook.port) == (self.host, self.port):
            yield (("webhooks", "listen"), "must differ from http.listen")


class LoggingSettings(Settings, frozen=True, kw_only=True):
    """``logging``: level and format (``auto``: console on a TTY, JSON lines otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class RuntimeSettings(Settings, frozen=True, kw_only=True):
    """``runtime``: the Python runtime under the daemon.

    ``gc``: ``tuned`` (a higher young-collection threshold, the settled fleet frozen out
    of collections; :mod:`saynad.runtime_gc`) or ``stock`` (the interpreter's own).
    """

    gc: Literal["tuned", "stock"] = "tuned"


class ShardingSettings(Settings, frozen=True, kw_only=True):
    """``sharding``: this instance is shard ``index`` of ``count`` (``saynad.sharding``).

    ``saynad run --shard I/N`` and ``SAYNAD_SHARD=I/N`` override both (``--shard I``:
    the index only, the count from here). Each shard runs the always-on sessions that
    rendezvous hashing of their names gives it.
    """

    index: NonNegativeInt = 0
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHARDS)] = 1

    def _problems(self) -> Problems:
        if self.index >= self.count:
            yield (
                ("index",),
                f"shard index {self.index} is not below count {self.count} (shards are "
                f"numbered 0 to {self.count - 1})",
            )


class BackoffSettings(Settings, frozen=True, kw_only=True):
    """Restart backoff: attempt n waits up to ``min(max_s, initial_s * multiplier**n)``."""

    initial_s: Seconds = 0.5
    max_s: Seconds = 30.0
    multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0

    def _problems(self) -> Problems:
        if self.initial_s > self.max_s:
            yield (
                ("initial_s",),
                f"initial_s ({self.initial_s:g}) must not exceed max_s ({self.max_s:g})",
            )


class IntensitySettings(Settings, frozen=True, kw_only=True):
    """Restart intensity: more than ``max_restarts`` restarts in ``window_s`` → failed."""

    max_restarts: PositiveInt = 5
    window_s: Seconds = 60.0


class KeepaliveSettings(Settings, frozen=True, kw_only=True):
    """WebSocket keepalive: a ping every ``interval_s``, answered within ``timeout_s``."""

    interval_s: Seconds = 15.0
    timeout_s: Seconds = 10.0


class Defaults(Settings, frozen=True, kw_only=True):
    """``defaults``: the supervision policy templates and sessions start from."""

    restart: RestartPolicy = "permanent"
    backoff: BackoffSettings = BackoffSettings()
    intensity: IntensitySettings = IntensitySettings()
    ready_timeout_s: Seconds = 60.0
    drain_timeout_s: Seconds = 10.0
    connect_timeout_s: Seconds = 10.0
    keepalive: KeepaliveSettings = KeepaliveSettings()


class SipWebhookSettings(Settings, frozen=True, kw_only=True):
    """``inbound.sip_webhook``: each verified SIP webhook starts a session from ``template``."""

    template: Name
    secrets: tuple[WebhookSecret, ...]
    path: WebhookPath = "/webhooks/sip"
    max_sessions: PositiveInt | None = None
    """The older name of ``admission.max_sessions`` (still accepted, never both)."""
    max_duration_s: Seconds = 3600.0
    max_body_bytes: PositiveInt = 65536
    tolerance_s: Seconds = 300.0

    def _problems(self) -> Problems:
        if not self.secrets:
            yield ("secrets",), "expected at least one secret"


class InboundSettings(Settings, frozen=True, kw_only=True):
    """``inbound``: SIP calls that arrive by webhook."""

    sip_webhook: SipWebhookSettings | None = None


class AdmissionSettings(Settings, frozen=True, kw_only=True):
    """``admission``: sessions started from outside, whatever asked for them (a SIP
    webhook, an outbound call, a session asked for over the API).

    ``max_sessions`` caps them all together (unset: ``inbound.sip_webhook.max_sessions``,
    its older name, else :data:`DEFAULT_MAX_SESSIONS`); ``max_duration_s`` caps outbound
    and on-demand sessions (inbound calls: ``inbound.sip_webhook.max_duration_s``); an
    ``Idempotency-Key`` is remembered for ``idempotency_ttl_s``, at most
    ``idempotency_max_keys`` of them (the oldest forgotten first).
    """

    max_sessions: PositiveInt | None = None
    max_duration_s: Seconds = 3600.0
    idempotency_ttl_s: Seconds = 86400.0
    idempotency_max_keys: PositiveInt = 10_000


class OutboundSipSettings(Settings, frozen=True, kw_only=True):
    """``outbound.sip``: the SIP trunk for outbound calls, overriding the server's."""

    outbound_address: Text | None = None
    auth_username: HeaderValue | None = None
    auth_password: Secret | None = None


class OutboundSettings(Settings, frozen=True, kw_only=True):
    """``outbound``: calls placed with ``POST /v1/calls`` (templates marked
    ``outbound: true``).

    ``from_phone_number``: the caller id when a request gives none; ``participant_name``:
    the callee's name in the room; ``answer_timeout_s``: how long the callee may take to
    answer (join the room) before the call is given up as ``no_answer``.
    """

    from_phone_number: PhoneNumber | None = None
    participant_name: Text = "Callee"
    answer_timeout_s: Seconds = 60.0
    sip: OutboundSipSettings | None = None
