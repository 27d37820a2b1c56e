"""Resolved sessions and the loaded configuration.

A :class:`SessionSpec` is everything one session needs: defaults ← template ← session
entry resolved by :func:`build_spec`, ``{session}`` rendered, paths absolute. Specs are
frozen, hashable and compare by value, so a reload restarts exactly the sessions whose
spec changed (the supervisor compares them: :func:`saynad.actors.supervisor.plan_reload`).
:class:`Config` is a whole loaded file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from saynad.config._schema import (
    DEFAULT_MAX_SESSIONS,
    AdmissionSettings,
    BackoffSettings,
    Defaults,
    HttpSettings,
    InboundSettings,
    IntensitySettings,
    KeepaliveSettings,
    LoggingSettings,
    OutboundSettings,
    RuntimeSettings,
    SaynaSettings,
    ShardingSettings,
)
from saynad.config._templates import (
    Behaviours,
    LiveKitSettings,
    LoadingAudioSettings,
    SessionEntry,
    SttSettings,
    Template,
    TtsSettings,
)
from saynad.config._values import RestartPolicy, render_placeholders, unset
from saynad.protocol.messages import (
    ConfigFrame,
    LiveKitConfig,
    LoadingAudioConfig,
    STTConfig,
    TTSConfig,
)
from saynad.sharding import Shard

__all__ = [
    "ORIGINS",
    "Config",
    "Origin",
    "SessionPolicy",
    "SessionSpec",
    "build_spec",
]


Origin = Literal["config", "inbound", "outbound", "on_demand"]
ORIGINS: tuple[Origin, ...] = ("config", "inbound", "outbound", "on_demand")
"""Where a session comes from: the configuration's ``sessions``, a SIP webhook, an
outbound call (``POST /v1/calls``), a session asked for over the API
(``POST /v1/sessions``). Every origin but ``config`` is admitted and ``temporary``."""


class SessionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a session is supervised: defaults ← template ← session, fully resolved."""

    restart: RestartPolicy
    backoff: BackoffSettings
    intensity: IntensitySettings
    ready_timeout_s: float
    drain_timeout_s: float
    connect_timeout_s: float
    keepalive: KeepaliveSettings


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to run one session, resolved from defaults, template and overrides.

    Specs are frozen, hashable and compare by value: a reload restarts a session exactly
    when its spec changed. ``stream_id`` and ``livekit.room_name`` have ``{session}``
    already substituted; paths are absolute.
    """

    name: str
    template: str
    origin: Origin = "config"
    audio: bool
    stt: SttSettings | None
    tts: TtsSettings | None
    livekit: LiveKitSettings | None
    loading_audio: LoadingAudioSettings | None
    stream_id: str | None
    policy: SessionPolicy
    behaviours: Behaviours

    def wire_stt(self) -> STTConfig | None:
        """``stt_config`` to send, or None (``audio: false`` sends none)."""
        return self.stt.to_wire() if self.audio and self.stt is not None else None

    def wire_tts(self) -> TTSConfig | None:
        """``tts_config`` to send, or None (``audio: false`` sends none)."""
        return self.tts.to_wire() if self.audio and self.tts is not None else None

    def wire_livekit(self) -> LiveKitConfig | None:
        """``livekit`` to send, or None for a WebSocket-only session."""
        return self.livekit.to_wire() if self.livekit is not None else None

    def wire_loading_audio(self) -> LoadingAudioConfig | None:
        """``loading_audio`` to send (reads the clip from disk), or None."""
        return self.loading_audio.to_wire() if self.loading_audio is not None else None

    def config_frame(self) -> ConfigFrame:
        """The session's complete ``config`` frame (reads the loading clip, if any)."""
        return ConfigFrame(
            stream_id=unset(self.stream_id),
            audio=self.audio,
            stt_config=unset(self.wire_stt()),
            tts_config=unset(self.wire_tts()),
            livekit=unset(self.wire_livekit()),
            loading_audio=unset(self.wire_loading_audio()),
        )


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded, fully checked configuration. Build it with :func:`load_config`.

    ``sessions`` holds the enabled always-on sessions in file order;
    ``disabled_sessions`` the names of those with ``enabled: false``.
    """

    source: str
    sayna: SaynaSettings
    http: HttpSettings
    logging: LoggingSettings
    runtime: RuntimeSettings = RuntimeSettings()
    sharding: ShardingSettings = ShardingSettings()
    defaults: Defaults
    admission: AdmissionSettings = AdmissionSettings()
    inbound: InboundSettings
    outbound: OutboundSettings = OutboundSettings()
    templates: Mapping[str, Template]
    sessions: tuple[SessionSpec, ...]
    disabled_sessions: tuple[str, ...] = ()

    def shard(self, index: int | None = None, count: int | None = None) -> Shard:
        """This instance's shard: ``sharding`` with ``index`` and ``count`` (the command
        line's or the environment's ``I/N``) taking precedence when given. ValueError
        when the index is not below the count."""
        return Shard(
            self.sharding.index if index is None else index,
            self.sharding.count if count is None else count,
        )

    def session(self, name: str) -> SessionSpec:
        """The always-on session called ``name`` (KeyError when there is none)."""
        for spec in self.sessions:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def max_sessions(self) -> int:
        """The cap on sessions started from outside, every origin together:
        ``admission.max_sessions``, else its older name ``inbound.sip_webhook.max_sessions``,
        else :data:`~saynad.config._schema.DEFAULT_MAX_SESSIONS`."""
        if self.admission.max_sessions is not None:
            return self.admission.max_sessions
        hook = self.inbound.sip_webhook
        if hook is not None and hook.max_sessions is not None:
            return hook.max_sessions
        return DEFAULT_MAX_SESSIONS

    def inbound_session(self, name: str, *, room_name: str) -> SessionSpec:
        """The spec of an inbound call's session: the webhook template in ``room_name``.

        Inbound sessions are ``temporary`` (never restarted: the call is gone).
        """
        hook = self.inbound.sip_webhook
        if hook is None:
            raise ValueError("inbound.sip_webhook is not configured")
        return self.admitted_session(name, hook.template, origin="inbound", room_name=room_name)

    def admitted_session(
        self, name: str, template: str, *, origin: Origin, room_name: str | None
    ) -> SessionSpec:
        """The spec of a session started from outside: ``template`` (KeyError when there
        is no such template) in ``room_name`` (None: the template's own room, if any).
        Such sessions are ``temporary``: never restarted."""
        return build_spec(
            name=name,
            template_name=template,
            template=self.templates[template],
            defaults=self.defaults,
            origin=origin,
            room_name=room_name,
        )


def build_spec(
    *,
    name: str,
    template_name: str,
    template: Template,
    defaults: Defaults,
    origin: Origin = "config",
    entry: SessionEntry | None = None,
    room_name: str | None = None,
) -> SessionSpec:
    """Resolve defaults ← template ← session entry into a spec (``{session}`` rendered).

    The entry's mappings were already decoded over the template's, so here a set entry
    field simply wins.
    """

    def pick(field: str) -> Any:
        value = getattr(entry, field) if entry is not None else None
        if value is None:
            value = getattr(template, field)
        return getattr(defaults, field) if value is None else value

    values = {"session": name}
    livekit = (entry.livekit if entry is not None else None) or template.livekit
    if livekit is not None:
        room = room_name if room_name is not None else livekit.room_name
        livekit = msgspec.structs.replace(
            livekit, room_name=None if room is None else render_placeholders(room, values)
        )
    stream_id = (entry.stream_id if entry is not None else None) or template.stream_id
    restart: RestartPolicy = "temporary" if origin != "config" else pick("restart")
    return SessionSpec(
        name=name,
        template=template_name,
        origin=origin,
        audio=template.audio,
        stt=(entry.stt if entry is not None else None) or template.stt,
        tts=(entry.tts if entry is not None else None) or template.tts,
        livekit=livekit,
        loading_audio=template.loading_audio,
        stream_id=None if stream_id is None else render_placeholders(stream_id, values),
        policy=SessionPolicy(
            restart=restart,
            backoff=pick("backoff"),
            intensity=pick("intensity"),
            ready_timeout_s=pick("ready_timeout_s"),
            drain_timeout_s=pick("drain_timeout_s"),
            connect_timeout_s=pick("connect_timeout_s"),
            keepalive=pick("keepalive"),
        ),
        behaviours=(entry.behaviours if entry is not None else None) or template.behaviours,
    )
