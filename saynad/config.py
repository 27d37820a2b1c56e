"""The daemon's configuration: one YAML file decoded into an immutable, typed value.

::

    load_config(path) ─ read ─ YAML nodes ─ Python values ─ typed Structs ─ checks ─ Config
                               (marks,       (secrets      (unknown keys    (cross-     │
                                duplicate     resolved)     rejected)        section)   ▼
                                keys)                                          SessionSpec × N

The file has eight sections (``sayna``, ``http``, ``logging``, ``runtime``, ``defaults``,
``inbound``, ``templates``, ``sessions``); ``docs/configuration.md`` describes every key. Loading
either returns a :class:`Config` or raises :class:`~saynad.errors.ConfigError` listing
*every* problem found, each formatted as ``FILE:LINE: PATH: what was expected``::

    config/x.yaml:12: sessions[3].template: unknown template 'agnt' (known: agent, lobby)

How all problems are found in one pass: the YAML is composed into nodes (so every value
keeps its line), turned into plain Python values with secrets resolved, then decoded
field by field into frozen msgspec Structs. msgspec alone stops at the first error of a
document; decoding each field separately (scalars still go through
:func:`msgspec.convert`) lets one bad value be reported without hiding the next one.

Secrets never sit in the file: a whole scalar value ``${env:NAME}``, ``${file:/abs/path}``
or ``${credential:NAME}`` (systemd's ``$CREDENTIALS_DIRECTORY``) is resolved at load.
Secret fields (API keys, tokens, webhook secrets) accept nothing else and hold a
:class:`Secret`, whose ``repr`` and ``str`` are ``***`` (HTTP header values also hold a
``Secret`` but may be literal).

Sessions are resolved at load: defaults ← template ← session overrides become one
:class:`SessionSpec` per always-on session. Specs compare by value, so a reload can
restart exactly the sessions whose spec changed (:func:`diff_sessions`).
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import errno
import hmac
import importlib
import inspect
import ipaddress
import json
import math
import os
import re
import stat
import string
import types
import wave
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, Union, final, get_args
from typing import get_origin as _get_origin
from urllib.parse import urlsplit

import msgspec
import yaml

from saynad.errors import ConfigError, ValidationError
from saynad.paths import fixed_prefix
from saynad.protocol.messages import (
    UNSET,
    ApiKeyAuth,
    AzureAuth,
    ConfigFrame,
    GoogleAuth,
    LiveKitConfig,
    LoadingAudioConfig,
    Pronunciation,
    ProviderAuth,
    STTConfig,
    TTSConfig,
)
from saynad.protocol.urls import rest_base_url
from saynad.shipped import BUILTIN_PREFIX, ShippedFileError, shipped_path

__all__ = [
    "CONFIG_FILE_MAX_BYTES",
    "DEFAULT_CONFIG_PATH",
    "AgentSettings",
    "AudioSettings",
    "AudioSinkSettings",
    "AudioSourceSettings",
    "BackoffSettings",
    "Behaviours",
    "Config",
    "Defaults",
    "EchoAgentSettings",
    "EmulatorSettings",
    "EndSettings",
    "FrozenMap",
    "GreetingSettings",
    "HttpAgentSettings",
    "HttpSettings",
    "HttpSinkSettings",
    "InboundSettings",
    "IntensitySettings",
    "JsonlSinkSettings",
    "KeepaliveSettings",
    "LiveKitSettings",
    "LoadingAudioSettings",
    "LoggingSettings",
    "OpenAIAgentSettings",
    "PronunciationSettings",
    "ProviderAuthSettings",
    "PythonAgentSettings",
    "RuntimeSettings",
    "SaynaSettings",
    "Secret",
    "SessionDiff",
    "SessionPolicy",
    "SessionSpec",
    "SipWebhookSettings",
    "SttSettings",
    "Template",
    "TranscriptSinkSettings",
    "TtsSettings",
    "diff_sessions",
    "load_config",
    "load_config_text",
    "render_placeholders",
    "summarize",
]

DEFAULT_CONFIG_PATH: Final = "/etc/saynad/saynad.yaml"
"""Where ``saynad run`` and ``saynad check`` look when ``--config`` is not given."""

NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"
"""Session and template names: they appear in logs, metrics and file names."""

STT_PROVIDERS: Final = frozenset(
    {"deepgram", "google", "elevenlabs", "microsoft-azure", "azure", "cartesia"}
)
TTS_PROVIDERS: Final = frozenset(
    {"deepgram", "elevenlabs", "google", "azure", "microsoft-azure", "cartesia"}
)

# Placeholders each templated string may use. Everything else is a load-time error, so a
# typo such as ``{sesion}`` is caught before the daemon starts.
STREAM_ID_PLACEHOLDERS: Final = frozenset({"session"})
ROOM_NAME_PLACEHOLDERS: Final = frozenset({"session"})
TRANSCRIPT_PATH_PLACEHOLDERS: Final = frozenset({"session", "date", "stream_id"})
AUDIO_SINK_PLACEHOLDERS: Final = frozenset({"session", "date", "stream_id"})

# The HTTP routes the daemon serves itself; the SIP webhook must not shadow them.
_RESERVED_HTTP_PATHS: Final = ("/metrics", "/healthz", "/readyz", "/sessions")

# Limits from the protocol (§5.4) for the loading clip, checked at load so a bad clip
# fails `saynad check` instead of producing a non-fatal server error at every session.
_LOADING_AUDIO_MAX_BYTES: Final = 1_924_096
_LOADING_AUDIO_MIN_MS: Final = 250
_LOADING_AUDIO_MAX_MS: Final = 10_000

CONFIG_FILE_MAX_BYTES: Final = 16 << 20
"""The largest configuration file ``load_config`` reads (16 MiB); larger is refused unread."""

_SECRET_FILE_MAX_BYTES: Final = 1 << 20
_MAX_DEPTH: Final = 64
_MAX_NODES: Final = 100_000
_MAX_COMPOSED_NODES: Final = 2 * _MAX_NODES + 1_000  # a mapping's keys are nodes too

_V = TypeVar("_V")

# --------------------------------------------------------------------------- value types


@final
class Secret:
    """A secret string resolved from ``${env:…}``, ``${file:…}`` or ``${credential:…}``.

    ``repr`` and ``str`` print ``***`` so a secret never lands in a log line, a traceback
    or ``saynad check`` output by accident; :meth:`reveal` returns the value for the one
    place that must send it. Secrets compare by value (in constant time), so a rotated
    key makes a session's spec differ and a reload restarts it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call it only where the value leaves the process."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


class FrozenMap(Mapping[str, _V]):
    """An immutable, hashable ``str``-keyed mapping (for HTTP headers).

    A ``dict`` inside a frozen Struct could still be mutated and would make the Struct
    unhashable; the supervisor keys children by their (hashable) spec.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, _V] | None = None) -> None:
        self._data: dict[str, _V] = dict(data or {})

    def __getitem__(self, key: str) -> _V:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


class _LiteralAllowed:
    """Marker in ``Annotated[Secret, …]``: the field also accepts a literal string."""


class _Check:
    """Marker in ``Annotated[T, …]``: a check of the decoded value (message or None).

    Single-value checks live on the type rather than in ``_problems`` so they run even
    when a sibling field is broken (``_problems`` needs the whole struct).
    """

    __slots__ = ("check",)

    def __init__(self, check: Callable[[Any], str | None]) -> None:
        self.check = check


Seconds = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Text = Annotated[str, msgspec.Meta(min_length=1)]
Name = Annotated[
    str,
    msgspec.Meta(
        pattern=NAME_PATTERN,
        max_length=128,
        description="a name made of letters, digits, '_', '.' and '-'",
    ),
]
HeaderValue = Annotated[Secret, _LiteralAllowed()]
"""A header value: literal (``application/json``) or a reference (``${env:TOKEN}``).
Every header value is redacted in ``repr`` because headers usually carry tokens."""


def _placeholders(allowed: frozenset[str]) -> _Check:
    return _Check(lambda value: _placeholder_problem(value, allowed))


def _webhook_secret_problem(secret: Secret) -> str | None:
    length = len(secret.reveal().strip())
    if length < 16:
        return (
            f"a webhook secret needs at least 16 characters after trimming; this one has {length}"
        )
    return None


def _webhook_path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return f"expected a path starting with '/', got {path!r}"
    for reserved in _RESERVED_HTTP_PATHS:
        if path == reserved or path.startswith(reserved + "/"):
            return f"{path!r} is served by the daemon itself ({reserved})"
    return None


def _listen_problem(value: str) -> str | None:
    try:
        _parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


# The lambdas defer the lookup: those validators are defined with the other helpers below.
SaynaUrl = Annotated[str, _Check(lambda url: _sayna_url_problem(url))]
HttpUrl = Annotated[str, _Check(lambda url: _http_url_problem(url))]
ListenAddress = Annotated[
    str,
    msgspec.Meta(description='a "host:port" string, e.g. "127.0.0.1:9464"'),
    _Check(_listen_problem),
]
StreamId = Annotated[
    str, msgspec.Meta(min_length=1), _Check(lambda value: _stream_id_problem(value))
]
RoomName = Annotated[str, msgspec.Meta(min_length=1), _placeholders(ROOM_NAME_PLACEHOLDERS)]
TranscriptPath = Annotated[
    str,
    msgspec.Meta(min_length=1),
    _Check(lambda value: _path_template_problem(value, TRANSCRIPT_PATH_PLACEHOLDERS)),
]
AudioSinkDir = Annotated[
    str,
    msgspec.Meta(min_length=1),
    _Check(lambda value: _path_template_problem(value, AUDIO_SINK_PLACEHOLDERS)),
]
AsyncFunction = Annotated[str, _Check(lambda value: _async_function_problem(value))]
WebhookSecret = Annotated[Secret, _Check(_webhook_secret_problem)]
WebhookPath = Annotated[str, _Check(_webhook_path_problem)]

RestartPolicy = Literal["permanent", "transient", "temporary"]

# --------------------------------------------------------------------------- schema

Problems = Iterator[tuple[tuple[str | int, ...], str]]
"""(path relative to the struct, message) pairs yielded by ``_problems``."""


class _Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the config Structs: frozen, unknown keys rejected, keyword-only.

    ``_problems`` holds the checks between fields of one struct (``initial_s <= max_s``);
    the loader reports them at the struct's path. Checks of a single value sit on its
    type (``_Check``), checks across sections in the loader.
    """

    def _problems(self) -> Problems:
        return iter(())


class EmulatorSettings(_Settings, frozen=True, kw_only=True):
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


class SaynaSettings(_Settings, frozen=True, kw_only=True):
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


class HttpSettings(_Settings, frozen=True, kw_only=True):
    """``http``: the daemon's own HTTP server (metrics, health, sessions, webhooks)."""

    listen: ListenAddress = "127.0.0.1:9464"
    control_token: Secret | None = None

    @property
    def host(self) -> str:
        """The host part of ``listen`` (brackets removed for IPv6)."""
        return _parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return _parse_listen(self.listen)[1]


class LoggingSettings(_Settings, frozen=True, kw_only=True):
    """``logging``: level and format (``auto``: console on a TTY, JSON lines otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class RuntimeSettings(_Settings, frozen=True, kw_only=True):
    """``runtime``: the Python runtime under the daemon.

    ``gc``: ``tuned`` (a higher young-collection threshold, the settled fleet frozen out
    of collections; :mod:`saynad.runtime_gc`) or ``stock`` (the interpreter's own).
    """

    gc: Literal["tuned", "stock"] = "tuned"


class BackoffSettings(_Settings, frozen=True, kw_only=True):
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


class IntensitySettings(_Settings, frozen=True, kw_only=True):
    """Restart intensity: more than ``max_restarts`` restarts in ``window_s`` → failed."""

    max_restarts: PositiveInt = 5
    window_s: Seconds = 60.0


class KeepaliveSettings(_Settings, frozen=True, kw_only=True):
    """WebSocket keepalive: a ping every ``interval_s``, answered within ``timeout_s``."""

    interval_s: Seconds = 15.0
    timeout_s: Seconds = 10.0


class Defaults(_Settings, frozen=True, kw_only=True):
    """``defaults``: the supervision policy templates and sessions start from."""

    restart: RestartPolicy = "permanent"
    backoff: BackoffSettings = BackoffSettings()
    intensity: IntensitySettings = IntensitySettings()
    ready_timeout_s: Seconds = 60.0
    drain_timeout_s: Seconds = 10.0
    connect_timeout_s: Seconds = 10.0
    keepalive: KeepaliveSettings = KeepaliveSettings()


class SipWebhookSettings(_Settings, frozen=True, kw_only=True):
    """``inbound.sip_webhook``: each verified SIP webhook starts a session from ``template``."""

    template: Name
    secrets: tuple[WebhookSecret, ...]
    path: WebhookPath = "/webhooks/sip"
    max_sessions: PositiveInt = 10
    max_duration_s: Seconds = 3600.0
    max_body_bytes: PositiveInt = 65536
    tolerance_s: Seconds = 300.0

    def _problems(self) -> Problems:
        if not self.secrets:
            yield ("secrets",), "expected at least one secret"


class InboundSettings(_Settings, frozen=True, kw_only=True):
    """``inbound``: sessions started from outside (today: SIP webhooks)."""

    sip_webhook: SipWebhookSettings | None = None


class ProviderAuthSettings(_Settings, frozen=True, kw_only=True):
    """``stt.auth`` / ``tts.auth``: a per-session provider credential.

    Deepgram, ElevenLabs and Cartesia take ``api_key``; Azure ``api_key`` and ``region``;
    Google ``credentials`` (service-account JSON text, e.g. ``${file:/…/sa.json}``).
    """

    api_key: Secret | None = None
    region: Text | None = None
    credentials: Secret | None = None

    def to_wire(self, provider: str) -> ProviderAuth:
        """The protocol's auth object for ``provider`` (checked at load)."""
        kind = provider.lower()
        if kind == "google":
            assert self.credentials is not None
            return GoogleAuth(credentials=self.credentials.reveal())
        assert self.api_key is not None
        if kind in ("azure", "microsoft-azure"):
            assert self.region is not None
            return AzureAuth(api_key=self.api_key.reveal(), region=self.region)
        return ApiKeyAuth(api_key=self.api_key.reveal())


class SttSettings(_Settings, frozen=True, kw_only=True):
    """``stt``: the wire ``stt_config`` (§5.1) plus an optional ``auth``."""

    provider: Text
    language: Text
    sample_rate: PositiveInt
    channels: Annotated[int, msgspec.Meta(ge=1, le=8)]
    punctuation: bool
    encoding: Text
    model: str
    auth: ProviderAuthSettings | None = None

    def to_wire(self) -> STTConfig:
        """The ``stt_config`` object saynad sends."""
        return STTConfig(
            provider=self.provider,
            language=self.language,
            sample_rate=self.sample_rate,
            channels=self.channels,
            punctuation=self.punctuation,
            encoding=self.encoding,
            model=self.model,
            auth=self.auth.to_wire(self.provider) if self.auth is not None else UNSET,
        )


class PronunciationSettings(_Settings, frozen=True, kw_only=True):
    """One whole-word replacement applied before synthesis."""

    word: Text
    pronunciation: Text


class TtsSettings(_Settings, frozen=True, kw_only=True):
    """``tts``: the wire ``tts_config`` (§5.2) plus pronunciations and an optional ``auth``.

    The timeouts are named with their unit here (``connection_timeout_s``); on the wire
    they are ``connection_timeout``/``request_timeout``.
    """

    provider: Text
    model: str
    voice_id: Text | None = None
    speaking_rate: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] | None = None
    audio_format: Text | None = None
    sample_rate: PositiveInt | None = None
    connection_timeout_s: PositiveInt | None = None
    request_timeout_s: PositiveInt | None = None
    pronunciations: tuple[PronunciationSettings, ...] | None = None
    auth: ProviderAuthSettings | None = None

    def to_wire(self) -> TTSConfig:
        """The ``tts_config`` object saynad sends (unset fields are omitted)."""
        return TTSConfig(
            provider=self.provider,
            model=self.model,
            voice_id=_unset(self.voice_id),
            speaking_rate=_unset(self.speaking_rate),
            audio_format=_unset(self.audio_format),
            sample_rate=_unset(self.sample_rate),
            connection_timeout=_unset(self.connection_timeout_s),
            request_timeout=_unset(self.request_timeout_s),
            pronunciations=(
                tuple(
                    Pronunciation(word=p.word, pronunciation=p.pronunciation)
                    for p in self.pronunciations
                )
                if self.pronunciations is not None
                else UNSET
            ),
            auth=self.auth.to_wire(self.provider) if self.auth is not None else UNSET,
        )


class LiveKitSettings(_Settings, frozen=True, kw_only=True):
    """``livekit``: the room to join. Unset fields keep the server's defaults.

    ``room_name`` may use ``{session}``. Templates may leave it out: always-on sessions
    set it, inbound calls take it from the webhook.
    """

    room_name: RoomName | None = None
    enable_recording: bool | None = None
    sayna_participant_identity: Text | None = None
    sayna_participant_name: Text | None = None
    listen_participants: tuple[Text, ...] | None = None

    def to_wire(self) -> LiveKitConfig:
        """The ``livekit`` object saynad sends. ``room_name`` must be set."""
        if self.room_name is None:
            raise ValueError("livekit.room_name is not set")
        return LiveKitConfig(
            room_name=self.room_name,
            enable_recording=_unset(self.enable_recording),
            sayna_participant_identity=_unset(self.sayna_participant_identity),
            sayna_participant_name=_unset(self.sayna_participant_name),
            listen_participants=_unset(self.listen_participants),
        )


class LoadingAudioSettings(_Settings, frozen=True, kw_only=True):
    """``loading_audio``: a local clip the server loops while ``loading_start`` is active.

    ``path`` is relative to the config file's directory; the file is read (and base64
    encoded) each time the wire object is built, so the config stays small.
    """

    path: Text
    format: Literal["wav", "pcm"] | None = None
    sample_rate: Annotated[int, msgspec.Meta(ge=8000, le=48000)] | None = None
    channels: Literal[1, 2] | None = None
    volume: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None

    def to_wire(self) -> LoadingAudioConfig:
        """Read the clip and build the ``loading_audio`` object (blocking file I/O)."""
        raw = Path(self.path).read_bytes()
        return LoadingAudioConfig(
            data=base64.b64encode(raw).decode("ascii"),
            format=_unset(self.format),
            sample_rate=_unset(self.sample_rate),
            channels=_unset(self.channels),
            volume=_unset(self.volume),
        )

    def _problems(self) -> Problems:
        if self.format == "pcm" and self.sample_rate is None:
            yield ("sample_rate",), "required when format is pcm"


class GreetingSettings(_Settings, frozen=True, kw_only=True):
    """``behaviours.greeting``: say ``text`` when the session is ready or someone joins."""

    text: Text
    when: Literal["ready", "first_participant"] = "ready"
    allow_interruption: bool = True


class _AgentBase(_Settings, tag_field="kind", frozen=True, kw_only=True):
    """Fields every agent kind shares."""

    barge_in: bool = True
    fallback_text: Text | None = None
    loading_indicator: bool = False
    timeout_s: Seconds = 10.0


class EchoAgentSettings(_AgentBase, tag="echo", frozen=True, kw_only=True):
    """``kind: echo``: repeat every final transcript (for demos and tests)."""


class OpenAIAgentSettings(_AgentBase, tag="openai", frozen=True, kw_only=True):
    """``kind: openai``: an OpenAI-compatible chat completions endpoint."""

    model: Text
    base_url: HttpUrl = "https://api.openai.com/v1"
    api_key: Secret | None = None
    system_prompt: str | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    max_history_turns: NonNegativeInt = 20

    def _problems(self) -> Problems:
        if self.api_key is None and urlsplit(self.base_url).hostname == "api.openai.com":
            yield ("api_key",), "required for api.openai.com (e.g. api_key: ${env:OPENAI_API_KEY})"


class HttpAgentSettings(_AgentBase, tag="http", frozen=True, kw_only=True):
    """``kind: http``: POST each final transcript to ``url`` and speak the answer."""

    url: HttpUrl
    headers: Mapping[str, HeaderValue] = FrozenMap()


class PythonAgentSettings(_AgentBase, tag="python", frozen=True, kw_only=True):
    """``kind: python``: an ``async def`` in an importable module (``"module:function"``).

    The function is imported when the file is loaded, so a typo fails ``saynad check``;
    a reload does not re-import an already imported module.
    """

    function: AsyncFunction


AgentSettings = EchoAgentSettings | OpenAIAgentSettings | HttpAgentSettings | PythonAgentSettings
"""``behaviours.agent``: one of the agent kinds, chosen by ``kind``."""


class _SinkBase(_Settings, tag_field="kind", frozen=True, kw_only=True):
    """Base of the transcript sinks."""


class JsonlSinkSettings(_SinkBase, tag="jsonl", frozen=True, kw_only=True):
    """``kind: jsonl``: append one JSON line per transcript to ``path``.

    ``path`` may use ``{session}``, ``{date}`` (UTC, YYYY-MM-DD) and ``{stream_id}``;
    relative paths start at the config file's directory.
    """

    path: TranscriptPath
    fsync: Literal["never", "always", "interval"] = "interval"
    fsync_interval_s: Seconds = 1.0


class HttpSinkSettings(_SinkBase, tag="http", frozen=True, kw_only=True):
    """``kind: http``: POST transcripts in batches to ``url`` (bounded queue, retries)."""

    url: HttpUrl
    headers: Mapping[str, HeaderValue] = FrozenMap()
    batch_size: PositiveInt = 50
    flush_interval_s: Seconds = 1.0
    queue_size: PositiveInt = 1000
    max_retries: NonNegativeInt = 3
    timeout_s: Seconds = 10.0

    def _problems(self) -> Problems:
        if self.batch_size > self.queue_size:
            yield (
                ("batch_size",),
                f"batch_size ({self.batch_size}) must not exceed queue_size ({self.queue_size})",
            )


TranscriptSinkSettings = JsonlSinkSettings | HttpSinkSettings
"""One entry of ``behaviours.transcripts``, chosen by ``kind``."""


class AudioSourceSettings(_Settings, frozen=True, kw_only=True):
    """``behaviours.audio.source``: stream a local file to the session as caller audio.

    The audio must match ``stt`` exactly (Sayna does not resample): a WAV's rate and
    channels are checked against ``stt`` at load; raw PCM needs ``sample_rate``.
    """

    path: Text
    format: Literal["wav", "pcm"] = "wav"
    sample_rate: PositiveInt | None = None
    realtime: bool = True
    loop: bool = False
    chunk_ms: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20

    def _problems(self) -> Problems:
        if self.format == "pcm" and self.sample_rate is None:
            yield ("sample_rate",), "required when format is pcm"
        if self.format == "wav" and self.sample_rate is not None:
            yield ("sample_rate",), "only for format pcm (a WAV header carries its rate)"


class AudioSinkSettings(_Settings, frozen=True, kw_only=True):
    """``behaviours.audio.sink``: write the session's TTS audio under ``dir``."""

    dir: AudioSinkDir


class AudioSettings(_Settings, frozen=True, kw_only=True):
    """``behaviours.audio``: a local audio source and/or sink."""

    source: AudioSourceSettings | None = None
    sink: AudioSinkSettings | None = None


class EndSettings(_Settings, frozen=True, kw_only=True):
    """``behaviours.end``: when a session ends on its own (then its policy decides)."""

    on_participant_disconnected: bool = False
    max_duration_s: Seconds | None = None
    idle_timeout_s: Seconds | None = None
    goodbye_text: Text | None = None


class Behaviours(_Settings, frozen=True, kw_only=True):
    """``behaviours``: what a session does once ready. Unset behaviours are off."""

    greeting: GreetingSettings | None = None
    agent: AgentSettings | None = None
    transcripts: tuple[TranscriptSinkSettings, ...] = ()
    audio: AudioSettings | None = None
    end: EndSettings | None = None


class Template(_Settings, frozen=True, kw_only=True):
    """``templates.NAME``: a session blueprint.

    The policy fields (``restart`` … ``keepalive``) default to the ``defaults`` section;
    a partial ``backoff``/``intensity``/``keepalive`` mapping is merged over it.
    """

    stt: SttSettings | None = None
    tts: TtsSettings | None = None
    audio: bool = True
    livekit: LiveKitSettings | None = None
    loading_audio: LoadingAudioSettings | None = None
    stream_id: StreamId | None = None
    restart: RestartPolicy | None = None
    backoff: BackoffSettings | None = None
    intensity: IntensitySettings | None = None
    ready_timeout_s: Seconds | None = None
    drain_timeout_s: Seconds | None = None
    connect_timeout_s: Seconds | None = None
    keepalive: KeepaliveSettings | None = None
    behaviours: Behaviours = Behaviours()


class _SessionEntry(_Settings, frozen=True, kw_only=True):
    """One item of ``sessions``, decoded over its template.

    ``stt``, ``tts``, ``livekit``, ``behaviours`` and the policy mappings are merged key by
    key over the template's (a key the session does not set keeps the template's value),
    so after decoding they hold the merged result. ``behaviours.X: null`` turns a
    template's behaviour off.
    """

    name: Name
    template: Name
    enabled: bool = True
    stream_id: StreamId | None = None
    livekit: LiveKitSettings | None = None
    stt: SttSettings | None = None
    tts: TtsSettings | None = None
    behaviours: Behaviours | None = None
    restart: RestartPolicy | None = None
    backoff: BackoffSettings | None = None
    intensity: IntensitySettings | None = None
    ready_timeout_s: Seconds | None = None
    drain_timeout_s: Seconds | None = None
    connect_timeout_s: Seconds | None = None
    keepalive: KeepaliveSettings | None = None


# --------------------------------------------------------------------------- resolved specs


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
    origin: Literal["config", "inbound"] = "config"
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
            stream_id=_unset(self.stream_id),
            audio=self.audio,
            stt_config=_unset(self.wire_stt()),
            tts_config=_unset(self.wire_tts()),
            livekit=_unset(self.wire_livekit()),
            loading_audio=_unset(self.wire_loading_audio()),
        )


class SessionDiff(msgspec.Struct, frozen=True, kw_only=True):
    """What a reload has to do: start ``added``, stop ``removed``, restart ``changed``."""

    added: tuple[SessionSpec, ...]
    removed: tuple[str, ...]
    changed: tuple[SessionSpec, ...]
    unchanged: tuple[str, ...]


def diff_sessions(old: Iterable[SessionSpec], new: Iterable[SessionSpec]) -> SessionDiff:
    """Compare two generations of always-on sessions by name and by value."""
    before = {spec.name: spec for spec in old}
    after = {spec.name: spec for spec in new}
    return SessionDiff(
        added=tuple(spec for name, spec in after.items() if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=tuple(
            spec for name, spec in after.items() if name in before and before[name] != spec
        ),
        unchanged=tuple(
            name for name, spec in after.items() if name in before and before[name] == spec
        ),
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
    defaults: Defaults
    inbound: InboundSettings
    templates: Mapping[str, Template]
    sessions: tuple[SessionSpec, ...]
    disabled_sessions: tuple[str, ...] = ()

    def session(self, name: str) -> SessionSpec:
        """The always-on session called ``name`` (KeyError when there is none)."""
        for spec in self.sessions:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def inbound_session(self, name: str, *, room_name: str) -> SessionSpec:
        """The spec of an inbound call's session: the webhook template in ``room_name``.

        Inbound sessions are ``temporary`` (never restarted: the call is gone).
        """
        hook = self.inbound.sip_webhook
        if hook is None:
            raise ValueError("inbound.sip_webhook is not configured")
        return _build_spec(
            name=name,
            template_name=hook.template,
            template=self.templates[hook.template],
            defaults=self.defaults,
            origin="inbound",
            room_name=room_name,
        )


# --------------------------------------------------------------------------- public entry points


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and check the YAML file at ``path``.

    ``env`` (default: ``os.environ``) resolves ``${env:…}`` and supplies
    ``CREDENTIALS_DIRECTORY`` for ``${credential:…}``. Relative paths in the file are
    relative to the file's directory. Raises :class:`~saynad.errors.ConfigError` with
    every problem found.
    """
    source = str(path)
    try:
        data = _read_regular_file(Path(path), CONFIG_FILE_MAX_BYTES)
    except _FileTooLargeError as exc:
        raise ConfigError([f"{source}: {exc.strerror}"]) from exc
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{source}:{line}: the file is not UTF-8 text"]) from exc
    environ = os.environ if env is None else env
    return load_config_text(
        text,
        source_name=source,
        env=environ,
        credentials_dir=environ.get("CREDENTIALS_DIRECTORY"),
        base_dir=Path(path).absolute().parent,
    )


def load_config_text(
    text: str,
    *,
    source_name: str = "<config>",
    env: Mapping[str, str] | None = None,
    credentials_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> Config:
    """Load a configuration from ``text``; ``source_name`` prefixes every problem.

    ``env`` defaults to ``os.environ``; ``credentials_dir`` (default: none) is where
    ``${credential:NAME}`` looks; ``base_dir`` (default: the current directory) anchors
    relative paths.
    """
    loader = _Loader(
        source=source_name,
        env=os.environ if env is None else env,
        credentials_dir=None if credentials_dir is None else Path(credentials_dir),
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
    )
    return loader.load(text)


def render_placeholders(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{name}`` placeholders (``{{``/``}}`` are literal braces).

    Templates are checked at load, so only known names reach this function.
    """
    out: list[str] = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values[field])
    return "".join(out)


def summarize(config: Config) -> str:
    """A short human summary of ``config`` for ``saynad check`` (never shows secrets)."""
    lines = [f"{config.source}: configuration OK"]
    sayna = config.sayna
    if sayna.url is None:
        lines.append("  sayna:     embedded emulator (no sayna.url)")
    else:
        key = "api key set" if sayna.api_key is not None else "no api key"
        lines.append(f"  sayna:     {sayna.url} ({key})")
    token = "control token set" if config.http.control_token is not None else "no control token"
    lines.append(f"  http:      {config.http.listen} ({token})")
    lines.append(f"  logging:   level {config.logging.level}, format {config.logging.format}")
    lines.append(f"  runtime:   gc {config.runtime.gc}")
    d = config.defaults
    lines.append(
        f"  defaults:  restart {d.restart}, backoff {d.backoff.initial_s:g}-{d.backoff.max_s:g} s, "
        f"at most {d.intensity.max_restarts} restarts in {d.intensity.window_s:g} s"
    )
    names = ", ".join(config.templates) or "none"
    lines.append(f"  templates: {len(config.templates)} ({names})")
    lines.append(f"  sessions:  {len(config.sessions)} always-on")
    for spec in config.sessions:
        if spec.livekit is not None:
            where = f"LiveKit room {spec.livekit.room_name!r}"
        else:
            where = "WebSocket only"
        kinds = _behaviour_names(spec.behaviours)
        lines.append(
            f"    - {spec.name} (template {spec.template}, {where}, restart "
            f"{spec.policy.restart}; {kinds})"
        )
    if config.disabled_sessions:
        lines.append(f"  disabled:  {', '.join(config.disabled_sessions)}")
    hook = config.inbound.sip_webhook
    if hook is None:
        lines.append("  inbound:   no SIP webhook")
    else:
        lines.append(
            f"  inbound:   SIP webhook at {hook.path} -> template {hook.template} "
            f"(at most {hook.max_sessions} calls, {len(hook.secrets)} secret(s))"
        )
    return "\n".join(lines)


def _behaviour_names(behaviours: Behaviours) -> str:
    names = []
    if behaviours.greeting is not None:
        names.append("greeting")
    if behaviours.agent is not None:
        names.append(f"{behaviours.agent.__struct_config__.tag} agent")
    if behaviours.transcripts:
        names.append(f"{len(behaviours.transcripts)} transcript sink(s)")
    if behaviours.audio is not None:
        names.extend(
            part
            for part, value in (
                ("audio source", behaviours.audio.source),
                ("audio sink", behaviours.audio.sink),
            )
            if value is not None
        )
    if behaviours.end is not None:
        names.append("end rules")
    return ", ".join(names) or "no behaviours"


# --------------------------------------------------------------------------- spec resolution


def _build_spec(
    *,
    name: str,
    template_name: str,
    template: Template,
    defaults: Defaults,
    origin: Literal["config", "inbound"] = "config",
    entry: _SessionEntry | None = None,
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
    restart: RestartPolicy = "temporary" if origin == "inbound" else pick("restart")
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


def _spec_problems(spec: SessionSpec) -> Problems:
    """Checks across a resolved spec's parts (paths relative to the template/session)."""
    if spec.audio:
        for part, value in (("stt", spec.stt), ("tts", spec.tts)):
            if value is None:
                yield (
                    (part,),
                    f"required when audio is true (the default); set {part} or audio: false",
                )
    else:
        for part, value in (("stt", spec.stt), ("tts", spec.tts)):
            if value is not None:
                yield (part,), f"set, but audio is false and the server ignores it; remove {part}"
    if spec.stt is not None:
        yield from _provider_problems("stt", spec.stt.provider, spec.stt.auth, STT_PROVIDERS)
    if spec.tts is not None:
        yield from _provider_problems("tts", spec.tts.provider, spec.tts.auth, TTS_PROVIDERS)
    if spec.loading_audio is not None:
        if spec.livekit is None or not spec.audio:
            yield (
                ("loading_audio",),
                "needs audio: true and a livekit section (the clip plays in the LiveKit room)",
            )
        problem = _loading_audio_problem(spec.loading_audio)
        if problem:
            yield ("loading_audio", "path"), problem
    b = spec.behaviours
    if b.greeting is not None:
        if not spec.audio:
            yield ("behaviours", "greeting"), "a greeting is spoken: it needs audio: true"
        if b.greeting.when == "first_participant" and spec.livekit is None:
            yield (
                ("behaviours", "greeting", "when"),
                "first_participant needs a livekit section (participants join a LiveKit room)",
            )
    if b.agent is not None:
        if not spec.audio:
            yield ("behaviours", "agent"), "an agent listens and speaks: it needs audio: true"
        if b.agent.loading_indicator and spec.loading_audio is None:
            yield (
                ("behaviours", "agent", "loading_indicator"),
                "needs a loading_audio clip (and a livekit section) to play while thinking",
            )
    if b.end is not None and b.end.on_participant_disconnected and spec.livekit is None:
        yield (
            ("behaviours", "end", "on_participant_disconnected"),
            "needs a livekit section (participants join a LiveKit room)",
        )
    if b.audio is not None and b.audio.source is not None:
        if not spec.audio:
            yield ("behaviours", "audio", "source"), "streaming audio needs audio: true"
        yield from _audio_source_problems(b.audio.source, spec.stt)


def _provider_problems(
    part: str, provider: str, auth: ProviderAuthSettings | None, known: frozenset[str]
) -> Problems:
    kind = provider.lower()
    if kind not in known:
        yield (
            (part, "provider"),
            f"unknown provider {provider!r} (expected one of: {', '.join(sorted(known))})",
        )
        return
    if auth is None:
        return
    required: tuple[str, ...]
    allowed: tuple[str, ...]
    if kind == "google":
        required = allowed = ("credentials",)
    elif kind in ("azure", "microsoft-azure"):
        required = allowed = ("api_key", "region")
    else:
        required = allowed = ("api_key",)
    for field in ("api_key", "region", "credentials"):
        value = getattr(auth, field)
        if field in required and value is None:
            yield (part, "auth"), f"missing {field!r}, required for provider {kind}"
        elif field not in allowed and value is not None:
            yield (
                (part, "auth", field),
                f"not used by provider {kind} (it takes: {', '.join(allowed)})",
            )


def _audio_source_problems(source: AudioSourceSettings, stt: SttSettings | None) -> Problems:
    where = ("behaviours", "audio", "source")
    if source.format == "pcm":
        problem = _readable_file_problem(source.path)
        if problem:
            yield (*where, "path"), problem
        elif stt is not None and source.sample_rate not in (None, stt.sample_rate):
            yield (
                (*where, "sample_rate"),
                f"{source.sample_rate} Hz, but stt.sample_rate is {stt.sample_rate} "
                "(Sayna does not resample)",
            )
        return
    info = _wav_info(source.path)
    if isinstance(info, str):
        yield (*where, "path"), info
        return
    rate, channels, _frames = info
    if stt is not None and (rate, channels) != (stt.sample_rate, stt.channels):
        yield (
            (*where, "path"),
            f"the WAV is {rate} Hz, {channels} channel(s), but stt expects "
            f"{stt.sample_rate} Hz, {stt.channels} channel(s) (Sayna does not resample)",
        )


def _loading_audio_problem(clip: LoadingAudioSettings) -> str | None:
    problem = _readable_file_problem(clip.path)
    if problem:
        return problem
    size = os.path.getsize(clip.path)
    if size > _LOADING_AUDIO_MAX_BYTES:
        return f"the clip has {size} bytes; the server accepts at most {_LOADING_AUDIO_MAX_BYTES}"
    fmt = clip.format
    if fmt is None:
        with open(clip.path, "rb") as fh:
            head = fh.read(12)
        fmt = "wav" if head[:4] == b"RIFF" and head[8:12] == b"WAVE" else "pcm"
        if fmt == "pcm" and clip.sample_rate is None:
            return "not a WAV file: give format: pcm and sample_rate for raw PCM"
    if fmt == "wav":
        info = _wav_info(clip.path)
        if isinstance(info, str):
            return info
        rate, channels, frames = info
        if channels not in (1, 2):
            return f"the clip has {channels} channels; the server takes mono or stereo"
        if not 8000 <= rate <= 48000:
            return f"the clip is {rate} Hz; the server takes 8000 to 48000 Hz"
    else:
        if clip.sample_rate is None:
            return None  # reported by LoadingAudioSettings itself
        rate = clip.sample_rate
        channels = clip.channels or 1
        frames = size // (2 * channels)
    duration_ms = frames * 1000 // rate if rate else 0
    if not _LOADING_AUDIO_MIN_MS <= duration_ms <= _LOADING_AUDIO_MAX_MS:
        return (
            f"the clip lasts {duration_ms} ms; the server takes "
            f"{_LOADING_AUDIO_MIN_MS} to {_LOADING_AUDIO_MAX_MS} ms"
        )
    return None


def _wav_info(path: str) -> tuple[int, int, int] | str:
    """(rate, channels, frames) of a 16-bit PCM WAV file, or why it is not one."""
    problem = _readable_file_problem(path)
    if problem:
        return problem
    try:
        with wave.open(path, "rb") as wav:
            if wav.getsampwidth() != 2:
                return f"{path} is not 16-bit PCM ({8 * wav.getsampwidth()}-bit)"
            return wav.getframerate(), wav.getnchannels(), wav.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        return f"{path} is not a readable WAV file ({exc})"


def _readable_file_problem(path: str) -> str | None:
    try:
        if not os.path.isfile(path):
            return (
                f"file {path} does not exist"
                if not os.path.exists(path)
                else f"{path} is not a file"
            )
        with open(path, "rb"):
            pass
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _stream_id_problem(stream_id: str) -> str | None:
    problem = _placeholder_problem(stream_id, STREAM_ID_PLACEHOLDERS)
    if problem is None and ("/" in stream_id or ".." in stream_id):
        # The server accepts it, but the recording then cannot be downloaded over REST.
        problem = "must not contain '/' or '..' (it is the recording's storage key)"
    return problem


# --------------------------------------------------------------------------- small validators


def _unset(value: Any) -> Any:
    return UNSET if value is None else value


def _parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError says what is wrong."""
    example = "expected host:port, e.g. 127.0.0.1:9464 or [::1]:9464"
    if value.startswith("["):
        match = re.fullmatch(r"\[([^\]]*)\]:([^:]*)", value)
        if match is None:
            raise ValueError(f"{example}, got {value!r}")
        host, port_text = match.group(1), match.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{example}, got {value!r}")
        if ":" in host:
            raise ValueError(f"write IPv6 addresses in brackets, e.g. [::1]:9464, got {value!r}")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
            raise ValueError(f"{host!r} is not a host name or IPv4 address")
        if re.fullmatch(r"[0-9.]+", host):
            # All digits and dots: an IPv4 address, never a host name (999.1.1.1 would
            # pass `saynad check` and fail only when `saynad run` binds).
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif len(host) > 253 or any(not 1 <= len(label) <= 63 for label in host.split(".")):
            raise ValueError(f"{host!r} is not a host name (labels of 1 to 63 characters)")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"the port must be a number from 1 to 65535, got {port_text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"the port must be from 1 to 65535, got {port}")
    return host, port


# RFC 3986 has no unencoded whitespace or control characters; urlsplit keeps them in the
# host, so "https://sayna example.com" would otherwise load and fail only at connect time.
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


def _sayna_url_problem(url: str) -> str | None:
    if _URL_FORBIDDEN.search(url.strip()):
        return f"not a valid URL (whitespace or a control character inside it): {url!r}"
    try:
        rest_base_url(url)
        port = urlsplit(url.strip()).port
    except ValidationError:
        return f"expected an http://, https://, ws:// or wss:// URL with a host, got {url!r}"
    except ValueError as exc:
        return f"not a valid URL ({exc}): {url!r}"
    if port == 0:
        return f"the port must be from 1 to 65535: {url!r}"
    return None


def _http_url_problem(url: str) -> str | None:
    if _URL_FORBIDDEN.search(url.strip()):
        return f"not a valid URL (whitespace or a control character inside it): {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc}): {url!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        return f"expected an http:// or https:// URL with a host, got {url!r}"
    return None


def _placeholder_problem(template: str, allowed: frozenset[str]) -> str | None:
    known = ", ".join("{" + name + "}" for name in sorted(allowed))
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"malformed placeholder in {template!r} ({exc}); write literal braces as {{{{ }}}}"
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            return f"unknown placeholder {shown} (known: {known})"
    return None


def _path_template_problem(template: str, allowed: frozenset[str]) -> str | None:
    """Placeholders as for any template, and no ``..`` after the first one: an expanded
    path stays under the template's fixed directory (see :mod:`saynad.paths`)."""
    problem = _placeholder_problem(template, allowed)
    if problem is not None:
        return problem
    prefix = fixed_prefix(template)
    if ".." in template[len(prefix) :].split("/"):
        return (
            f"'..' after a placeholder in {template!r} could leave the directory "
            f"{prefix or './'!r}; write the directory before the placeholders"
        )
    return None


def _async_function_problem(reference: str) -> str | None:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        return f"expected 'module:function', got {reference!r}"
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing user code is a config problem
        return f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            return f"module {module_name!r} has no attribute {attribute!r}"
    if not inspect.iscoroutinefunction(target):
        return f"{reference!r} is not an async function (define it with 'async def')"
    return None


# --------------------------------------------------------------------------- the loader

_Path = tuple[str | int, ...]


class _Bad:
    """A value already reported as a problem; decoding it adds no second message."""


_BAD: Final = _Bad()
_INVALID: Final = object()
_NONE_TYPE: Final = type(None)


class _Ref(str):
    """A string produced by resolving a reference; remembers the reference text.

    Only secret fields check for it (a literal string there is refused); everywhere
    else it is converted back to a plain ``str``.
    """

    reference: str


class _TooManyNodes(yaml.YAMLError):
    """Composing stopped: the document has more nodes than the loader builds."""


class _YamlLoader(yaml.SafeLoader):
    """The safe loader, used only to compose nodes and to build scalars.

    The config loader walks the node graph itself: that is where every value's line is
    recorded and duplicate keys are refused (PyYAML keeps the last one silently).
    Composing stops at :data:`_MAX_COMPOSED_NODES` nodes (keys and values), so a huge
    document costs a bounded amount of time and memory before it is refused (not the
    whole file's node graph).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.composed += 1
        if self.composed > _MAX_COMPOSED_NODES:
            raise _TooManyNodes(f"the document expands to more than {_MAX_NODES} values")
        return super().compose_node(parent, index)


_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_EMBEDDED_REFERENCE = re.compile(r"\$\{(?:env|file|credential):")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_MAX_INT: Final = 2**63 - 1
_MAX_INT_DIGITS: Final = 19  # the digits of _MAX_INT (hex, octal and binary: fewer still)
_SECTIONS: Final = (
    "sayna",
    "http",
    "logging",
    "runtime",
    "defaults",
    "inbound",
    "templates",
    "sessions",
)


class _Loader:
    """One load: YAML → values (with marks) → Structs → checks → Config or ConfigError."""

    def __init__(
        self,
        *,
        source: str,
        env: Mapping[str, str],
        credentials_dir: Path | None,
        base_dir: Path,
    ) -> None:
        self.source = source
        self.env = env
        self.credentials_dir = credentials_dir
        self.base_dir = base_dir
        self.lines: dict[_Path, int] = {}
        self.problems: list[tuple[_Path, str, int | None]] = []
        self._yaml: _YamlLoader | None = None
        self._own_keys: dict[int, set[int]] = {}
        self._active: set[int] = set()
        self._nodes = 0

    # ---------------------------------------------------------------- problems

    def problem(self, path: _Path, message: str, *, line: int | None = None) -> None:
        self.problems.append((path, message, line))

    def line_of(self, path: _Path) -> int | None:
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def raise_if_problems(self) -> None:
        if not self.problems:
            return
        formatted: list[tuple[float, int, str]] = []
        seen: set[str] = set()
        for index, (path, message, line) in enumerate(self.problems):
            line = line if line is not None else self.line_of(path)
            where = f"{self.source}:{line}" if line is not None else self.source
            # One problem per line of output, whatever an exception's text contained.
            message = re.sub(r"\s*\n\s*", " ", message)
            text = f"{where}: {_format_path(path)}: {message}" if path else f"{where}: {message}"
            if text not in seen:
                seen.add(text)
                formatted.append((line if line is not None else math.inf, index, text))
        formatted.sort()
        raise ConfigError([text for _line, _index, text in formatted])

    # ---------------------------------------------------------------- YAML → values

    def load(self, text: str) -> Config:
        data: Any = _BAD
        try:
            self._yaml = _YamlLoader(text)
            try:
                node = self._yaml.get_single_node()
                data = self.build(node, ()) if node is not None else None
            finally:
                self._yaml.dispose()
        except _TooManyNodes as exc:
            self.problem((), str(exc), line=1)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = exc.problem or str(exc)
            if exc.context and exc.context_mark is not None:
                context_line = exc.context_mark.line + 1
                if what.startswith("but "):  # PyYAML phrases some as "expected X … but Y"
                    what = f"{exc.context} (line {context_line}), {what}"
                else:
                    what += f" ({exc.context} at line {context_line})"
            self.problem((), f"invalid YAML: {what}", line=line)
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            character = chr(exc.character) if isinstance(exc.character, int) else exc.character
            self.problem((), f"invalid YAML: {exc.reason} ({character!r})", line=line)
        except yaml.YAMLError as exc:
            self.problem((), f"invalid YAML: {exc}", line=1)
        except RecursionError:
            self.problem((), "the document nests too deeply", line=1)
        else:
            if node is None:
                self.problem((), "the file is empty; expected a mapping of sections", line=1)
            elif data is not _BAD and not isinstance(data, dict):
                self.problem(
                    (),
                    f"expected a mapping of sections ({', '.join(_SECTIONS)}), "
                    f"got {_describe_value(data)}",
                )
        if not isinstance(data, dict):
            self.raise_if_problems()
        # Problems found while reading values (duplicate keys, missing secrets…) left
        # placeholders behind; decoding carries on so every other problem is reported too.
        config = self.decode_document(data)
        self.raise_if_problems()
        return config

    def build(self, node: yaml.Node, path: _Path) -> Any:
        """Turn a node into plain values, recording the line of every path."""
        self.lines.setdefault(path, node.start_mark.line + 1)
        self._nodes += 1
        if self._nodes == _MAX_NODES:
            self.problem(path, f"the document expands to more than {_MAX_NODES} values")
        if self._nodes >= _MAX_NODES:
            return _BAD
        if len(path) > _MAX_DEPTH:
            self.problem(path, f"the document nests more than {_MAX_DEPTH} levels deep")
            return _BAD
        if id(node) in self._active:
            self.problem(path, "recursive YAML alias")
            return _BAD
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.build_mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    self.problem(path, f"unsupported YAML tag {node.tag!r}")
                    return _BAD
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.ScalarNode)
            return self.build_scalar(node, path)
        finally:
            self._active.discard(id(node))

    def build_mapping(self, node: yaml.MappingNode, path: _Path) -> Any:
        assert self._yaml is not None
        if node.tag != _MAP_TAG:
            self.problem(path, f"unsupported YAML tag {node.tag!r}")
            return _BAD
        own = self._own_keys.get(id(node))
        if own is None:
            # Remember which keys the mapping itself wrote before `<<` merges are inlined
            # (flattening rewrites the node in place; an alias may visit it again).
            own = {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
            self._own_keys[id(node)] = own
            if len(own) != len(node.value):
                try:
                    self._yaml.flatten_mapping(node)
                except yaml.MarkedYAMLError as exc:
                    mark = exc.problem_mark
                    self.problem(
                        path, f"invalid merge: {exc.problem}", line=mark.line + 1 if mark else None
                    )
                    return _BAD
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = self.scalar_key(key_node, path)
            if key is None:
                continue
            if id(key_node) in own:
                if key in first_line:
                    self.problem(
                        (*path, key),
                        f"duplicate key {key!r} (first defined at line {first_line[key]})",
                        line=key_line,
                    )
                    continue
                first_line[key] = key_line
            self.lines[(*path, key)] = key_line
            result[key] = self.build(value_node, (*path, key))
        return result

    def scalar_key(self, node: yaml.Node, path: _Path) -> str | None:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode):
            self.problem(path, "mapping keys must be plain strings", line=line)
            return None
        try:
            key = self.construct_scalar(node)
        except _ScalarError as exc:
            self.problem(path, str(exc), line=line)
            return None
        if not isinstance(key, str):
            self.problem(
                path,
                f"mapping keys must be strings, got {_describe_value(key)} (quote it)",
                line=line,
            )
            return None
        return key

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:
        assert self._yaml is not None
        if node.tag == _INT_TAG:
            digits = sum(c.isalnum() for c in node.value)
            if digits > _MAX_INT_DIGITS:
                raise _ScalarError(
                    f"the integer has {digits} digits; saynad takes integers of at most "
                    f"{_MAX_INT_DIGITS} digits"
                )
        try:
            value = self._yaml.construct_object(node, deep=True)
        except Exception as exc:
            # PyYAML's scalar constructors raise ConstructorError, ValueError (a timestamp
            # with month 13), OverflowError…; each simply means "not a valid YAML value".
            detail = getattr(exc, "problem", None) or str(exc)
            raise _ScalarError(f"invalid YAML value: {detail}") from exc
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT:
            raise _ScalarError(f"the integer {value} is too large; at most {_MAX_INT}")
        return value

    def build_scalar(self, node: yaml.ScalarNode, path: _Path) -> Any:
        try:
            value = self.construct_scalar(node)
        except _ScalarError as exc:
            self.problem(path, str(exc))
            return _BAD
        if not isinstance(value, str):
            return value
        match = _REFERENCE.fullmatch(value)
        if match is not None:
            return self.resolve_reference(match.group(1), path)
        if _EMBEDDED_REFERENCE.search(value):
            self.problem(
                path,
                "a ${…} reference must be the whole value, not part of a string; "
                "put the complete value (e.g. 'Bearer …') in the secret",
            )
            return _BAD
        return value

    def resolve_reference(self, body: str, path: _Path) -> Any:
        kind, sep, argument = body.partition(":")
        if not sep or kind not in ("env", "file", "credential"):
            self.problem(
                path,
                f"unknown reference ${{{body}}}: expected ${{env:NAME}}, ${{file:/absolute/path}} "
                "or ${credential:NAME}",
            )
            return _BAD
        value = getattr(self, f"_resolve_{kind}")(argument)
        if isinstance(value, _Problem):
            self.problem(path, str(value))
            return _BAD
        ref = _Ref(value)
        ref.reference = f"${{{body}}}"
        return ref

    def _resolve_env(self, name: str) -> str | _Problem:
        if not _ENV_NAME.fullmatch(name):
            return _Problem(f"${{env:{name}}}: {name!r} is not an environment variable name")
        value = self.env.get(name)
        if value is None:
            return _Problem(f"${{env:{name}}}: environment variable {name} is not set")
        if not value:
            return _Problem(f"${{env:{name}}}: environment variable {name} is empty")
        return value

    def _resolve_file(self, name: str) -> str | _Problem:
        if not os.path.isabs(name):
            return _Problem(f"${{file:{name}}}: the path must be absolute")
        return _read_secret_file(Path(name), f"${{file:{name}}}")

    def _resolve_credential(self, name: str) -> str | _Problem:
        label = f"${{credential:{name}}}"
        if not name or "/" in name or name in (".", ".."):
            return _Problem(f"{label}: {name!r} is not a credential name")
        if self.credentials_dir is None:
            return _Problem(
                f"{label}: $CREDENTIALS_DIRECTORY is not set (systemd sets it for "
                "LoadCredential=/SetCredential=; outside systemd use ${env:…} or ${file:…})"
            )
        return _read_secret_file(self.credentials_dir / name, label, credential=True)

    # ---------------------------------------------------------------- values → Structs

    def decode_document(self, data: dict[str, Any]) -> Config:
        for key in data:
            if key not in _SECTIONS:
                self.problem((key,), _unknown_key_message(key, _SECTIONS))
        sayna = self.section(data, "sayna", SaynaSettings)
        http = self.section(data, "http", HttpSettings)
        logging = self.section(data, "logging", LoggingSettings)
        runtime = self.section(data, "runtime", RuntimeSettings)
        defaults = self.section(data, "defaults", Defaults)
        inbound = self.section(data, "inbound", InboundSettings)
        templates, broken = self.decode_templates(data.get("templates", {}), defaults)
        sessions, disabled = self.decode_sessions(
            data.get("sessions", []), templates, broken, defaults
        )
        self.check_inbound(inbound, templates, broken)
        return Config(
            source=self.source,
            sayna=sayna,
            http=http,
            logging=logging,
            runtime=runtime,
            defaults=defaults,
            inbound=inbound,
            templates=FrozenMap(templates),
            sessions=sessions,
            disabled_sessions=disabled,
        )

    def section(self, data: dict[str, Any], key: str, tp: type[_S]) -> _S:
        """Decode one top-level section; on failure carry on with its defaults."""
        if key not in data:
            return tp()
        value = self.convert(data[key], tp, (key,))
        return value if isinstance(value, tp) else tp()

    def decode_templates(
        self, raw: Any, defaults: Defaults
    ) -> tuple[dict[str, Template], set[str]]:
        """Decode every template; returns the good ones and the names of broken ones."""
        templates: dict[str, Template] = {}
        broken: set[str] = set()
        if raw is _BAD:
            return templates, broken
        if not isinstance(raw, dict):
            self.problem(
                ("templates",), f"expected a mapping of template names, got {_describe_value(raw)}"
            )
            return templates, broken
        bases = {
            "backoff": defaults.backoff,
            "intensity": defaults.intensity,
            "keepalive": defaults.keepalive,
        }
        for name, value in raw.items():
            path: _Path = ("templates", name)
            if not re.fullmatch(NAME_PATTERN, name):
                self.problem(path, "template names may use only letters, digits, '_', '.', '-'")
            template = self.convert(value, Template, path, field_bases=bases)
            if isinstance(template, Template):
                templates[name] = self.absolute_template(template)
            else:
                broken.add(name)
        for name, template in templates.items():
            # A template must be valid on its own (inbound calls use it as it is).
            # Sessions re-check their merged result; a problem they locate at the
            # template repeats this line exactly and is reported once.
            spec = _build_spec(name=name, template_name=name, template=template, defaults=defaults)
            for rel, message in _spec_problems(spec):
                self.problem(("templates", name, *rel), message)
        return templates, broken

    def decode_sessions(
        self,
        raw: Any,
        templates: Mapping[str, Template],
        broken: set[str],
        defaults: Defaults,
    ) -> tuple[tuple[SessionSpec, ...], tuple[str, ...]]:
        """Decode every session, then check names and rooms across them."""
        if raw is _BAD:
            return (), ()
        if not isinstance(raw, list):
            self.problem(("sessions",), f"expected a list of sessions, got {_describe_value(raw)}")
            return (), ()
        specs: list[SessionSpec] = []
        disabled: list[str] = []
        names: dict[str, int] = {}
        rooms: dict[str, tuple[str, int]] = {}
        for index, item in enumerate(raw):
            path: _Path = ("sessions", index)
            # Names are compared on the raw value so a duplicate is reported even when
            # either session has other problems.
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in names:
                first = names[name]
                self.problem(
                    (*path, "name"),
                    f"duplicate session name {name!r} (first used by sessions[{first}] "
                    f"at line {self.line_of(('sessions', first))})",
                )
                name = None
            elif isinstance(name, str):
                names[name] = index
            spec, enabled = self.decode_session(item, path, templates, broken, defaults)
            if spec is None or name is None:
                continue
            if not enabled:
                disabled.append(spec.name)
                continue
            if spec.livekit is not None:
                self.check_room(spec, item, path, rooms)
            specs.append(spec)
        return tuple(specs), tuple(disabled)

    def decode_session(
        self,
        item: Any,
        path: _Path,
        templates: Mapping[str, Template],
        broken: set[str],
        defaults: Defaults,
    ) -> tuple[SessionSpec | None, bool]:
        """Decode one session over its template; returns (spec or None, enabled)."""
        template_name = item.get("template") if isinstance(item, dict) else None
        template = templates.get(template_name) if isinstance(template_name, str) else None
        if template is None:
            if isinstance(template_name, str) and template_name not in broken:
                known = ", ".join(sorted({*templates, *broken})) or "none defined"
                self.problem(
                    (*path, "template"), f"unknown template {template_name!r} (known: {known})"
                )
            # Still decode the session to report its own mistakes; without a template
            # every merged section would look incomplete, so require nothing.
            self.convert(item, _SessionEntry, path, require=False)
            return None, False
        bases = {
            "stt": template.stt,
            "tts": template.tts,
            "livekit": template.livekit,
            "behaviours": template.behaviours,
            "backoff": template.backoff or defaults.backoff,
            "intensity": template.intensity or defaults.intensity,
            "keepalive": template.keepalive or defaults.keepalive,
        }
        entry = self.convert(item, _SessionEntry, path, field_bases=bases)
        if not isinstance(entry, _SessionEntry):
            return None, False
        spec = _build_spec(
            name=entry.name,
            template_name=entry.template,
            template=template,
            defaults=defaults,
            entry=self.absolute_entry(entry),
        )
        for rel, message in _spec_problems(spec):
            self.problem(self.locate(rel, item, path, ("templates", entry.template)), message)
        return spec, entry.enabled

    def check_room(
        self, spec: SessionSpec, item: Any, path: _Path, rooms: dict[str, tuple[str, int]]
    ) -> None:
        """One LiveKit room per always-on session: the server deletes it at session end."""
        assert spec.livekit is not None
        room = spec.livekit.room_name
        if room is None:
            self.problem(
                (*path, "livekit", "room_name"),
                f"required: template {spec.template!r} joins LiveKit but sets no room_name "
                "(set livekit.room_name on the session)",
            )
        elif room in rooms:
            other, other_index = rooms[room]
            where = self.locate(("livekit", "room_name"), item, path, ())
            self.problem(
                where if where[:1] == ("sessions",) else path,
                f"LiveKit room {room!r} is already used by session {other!r} "
                f"(sessions[{other_index}]); the server deletes a room when its session ends, "
                "so each session needs its own room",
            )
        else:
            rooms[room] = (spec.name, path[1] if isinstance(path[1], int) else 0)

    def check_inbound(
        self,
        inbound: InboundSettings,
        templates: Mapping[str, Template],
        broken: set[str],
    ) -> None:
        """The webhook's template exists and joins LiveKit (calls arrive in a room)."""
        hook = inbound.sip_webhook
        if hook is None:
            return
        path: _Path = ("inbound", "sip_webhook", "template")
        template = templates.get(hook.template)
        if template is None:
            if hook.template not in broken:
                known = ", ".join(sorted({*templates, *broken})) or "none defined"
                self.problem(path, f"unknown template {hook.template!r} (known: {known})")
            return
        if template.livekit is None:
            self.problem(
                path,
                f"template {hook.template!r} has no livekit section; SIP calls arrive in a "
                "LiveKit room",
            )

    @staticmethod
    def locate(rel: _Path, raw: Any, session: _Path, template: _Path) -> _Path:
        """Point a spec problem at the session when it set that key, else at the template."""
        if isinstance(raw, dict) and rel and rel[0] in raw:
            if rel[0] != "behaviours" or len(rel) == 1:
                return (*session, *rel)
            behaviours = raw["behaviours"]
            if isinstance(behaviours, dict) and rel[1] in behaviours:
                return (*session, *rel)
        return (*template, *rel)

    # ---------------------------------------------------------------- relative paths

    def absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(path)))

    def input_file(self, path: str) -> str:
        """A file saynad reads: ``builtin:NAME`` is one shipped with saynad, else as
        :meth:`absolute` (an unknown ``builtin:`` name stays as written and the file
        check reports it)."""
        if path.startswith(BUILTIN_PREFIX):
            with contextlib.suppress(ShippedFileError):
                return str(shipped_path(path.removeprefix(BUILTIN_PREFIX)))
            return path
        return self.absolute(path)

    def absolute_behaviours(self, b: Behaviours) -> Behaviours:
        replace = msgspec.structs.replace
        audio = b.audio
        if audio is not None:
            audio = replace(
                audio,
                source=(
                    replace(audio.source, path=self.input_file(audio.source.path))
                    if audio.source is not None
                    else None
                ),
                sink=(
                    replace(audio.sink, dir=self.absolute(audio.sink.dir))
                    if audio.sink is not None
                    else None
                ),
            )
        sinks = tuple(
            replace(sink, path=self.absolute(sink.path))
            if isinstance(sink, JsonlSinkSettings)
            else sink
            for sink in b.transcripts
        )
        return replace(b, audio=audio, transcripts=sinks)

    def absolute_template(self, t: Template) -> Template:
        loading = t.loading_audio
        if loading is not None:
            loading = msgspec.structs.replace(loading, path=self.input_file(loading.path))
        return msgspec.structs.replace(
            t, loading_audio=loading, behaviours=self.absolute_behaviours(t.behaviours)
        )

    def absolute_entry(self, e: _SessionEntry) -> _SessionEntry:
        if e.behaviours is None:
            return e
        # Paths inherited from the template are already absolute; joining is idempotent.
        return msgspec.structs.replace(e, behaviours=self.absolute_behaviours(e.behaviours))

    # ---------------------------------------------------------------- the converter

    def convert(
        self,
        data: Any,
        tp: Any,
        path: _Path,
        *,
        base: Any = None,
        field_bases: Mapping[str, Any] | None = None,
        require: bool = True,
    ) -> Any:
        """Decode ``data`` as ``tp``; report every problem; return ``_INVALID`` on failure.

        ``base`` (a Struct of type ``tp``) supplies the fields ``data`` leaves out;
        ``field_bases`` does the same one level down (the session-over-template merge).
        """
        if data is _BAD:
            return _INVALID
        origin = _get_origin(tp)
        if origin is Annotated:
            inner, *meta = get_args(tp)
            if inner is Secret:
                literal = any(isinstance(m, _LiteralAllowed) for m in meta)
                value = self.convert_secret(data, path, literal)
            else:
                value = self.convert_scalar(data, tp, path)
            for check in (m for m in meta if isinstance(m, _Check)):
                problem = None if value is _INVALID else check.check(value)
                if problem:
                    if isinstance(data, _Ref) and data:
                        # Checks quote the bad value; a resolved one is shown by reference.
                        problem = problem.replace(str(data), data.reference)
                    self.problem(path, problem)
                    value = _INVALID
            return value
        if origin in (Union, types.UnionType):
            return self.convert_union(data, tp, path, base=base, require=require)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return self.convert_struct(
                data, tp, path, base=base, field_bases=field_bases, require=require
            )
        if origin is tuple:
            return self.convert_list(data, tp, path, require=require)
        if origin in (Mapping, dict):
            return self.convert_mapping(data, tp, path, require=require)
        if tp is Secret:
            return self.convert_secret(data, path, False)
        return self.convert_scalar(data, tp, path)

    def convert_union(self, data: Any, tp: Any, path: _Path, *, base: Any, require: bool) -> Any:
        members = [arg for arg in get_args(tp) if arg is not _NONE_TYPE]
        if data is None and len(members) < len(get_args(tp)):
            return None
        if len(members) == 1:
            return self.convert(data, members[0], path, base=base, require=require)
        tags = {
            m.__struct_config__.tag: m
            for m in members
            if isinstance(m, type) and issubclass(m, msgspec.Struct)
        }
        if len(tags) != len(members):
            # A union of scalars (none in the schema today): msgspec picks the member.
            return self.convert_scalar(data, tp, path)
        tag_field = members[0].__struct_config__.tag_field
        expected = ", ".join(str(t) for t in tags)
        if not isinstance(data, dict):
            self.problem(
                path,
                f"expected a mapping with a {tag_field} (one of: {expected}), "
                f"got {_describe_value(data)}",
            )
            return _INVALID
        if tag_field not in data:
            self.problem(path, f"missing required key {tag_field!r} (one of: {expected})")
            return _INVALID
        kind = data[tag_field]
        if kind is _BAD:
            return _INVALID
        member = tags.get(kind) if isinstance(kind, str) else None
        if member is None:
            self.problem(
                (*path, tag_field),
                f"unknown {tag_field} {_describe_value(kind)} (expected one of: {expected})",
            )
            return _INVALID
        return self.convert(data, member, path, require=require)

    def convert_struct(
        self,
        data: Any,
        tp: type[msgspec.Struct],
        path: _Path,
        *,
        base: Any,
        field_bases: Mapping[str, Any] | None,
        require: bool,
    ) -> Any:
        if not isinstance(data, dict):
            self.problem(path, f"expected a mapping, got {_describe_value(data)}")
            return _INVALID
        fields = msgspec.structs.fields(tp)
        tag_field = tp.__struct_config__.tag_field
        names = [f.name for f in fields]
        for key in data:
            if key not in names and key != tag_field:
                kind = tp.__struct_config__.tag
                context = f" for {tag_field} {kind!r}" if kind is not None else ""
                self.problem((*path, key), _unknown_key_message(key, names, context))
        values: dict[str, Any] = {}
        ok = True
        for f in fields:
            if f.name in data:
                value = self.convert(
                    data[f.name],
                    f.type,
                    (*path, f.name),
                    base=(field_bases or {}).get(f.name),
                    require=require,
                )
                if value is _INVALID:
                    ok = False
                else:
                    values[f.name] = value
            elif base is not None:
                values[f.name] = getattr(base, f.name)
            elif f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT:
                if require:
                    self.problem(path, f"missing required key {f.name!r}")
                ok = False
        if not ok:
            return _INVALID
        result = tp(**values)
        if isinstance(result, _Settings):
            for rel, message in result._problems():
                self.problem((*path, *rel), message)
        return result

    def convert_list(self, data: Any, tp: Any, path: _Path, *, require: bool) -> Any:
        item_type = get_args(tp)[0]
        if not isinstance(data, list):
            self.problem(path, f"expected a list, got {_describe_value(data)}")
            return _INVALID
        items = [
            self.convert(item, item_type, (*path, i), require=require)
            for i, item in enumerate(data)
        ]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)

    def convert_mapping(self, data: Any, tp: Any, path: _Path, *, require: bool) -> Any:
        value_type = get_args(tp)[1]
        if not isinstance(data, dict):
            self.problem(path, f"expected a mapping, got {_describe_value(data)}")
            return _INVALID
        items = {
            key: self.convert(value, value_type, (*path, key), require=require)
            for key, value in data.items()
        }
        if any(value is _INVALID for value in items.values()):
            return _INVALID
        return FrozenMap(items)

    def convert_secret(self, data: Any, path: _Path, literal_allowed: bool) -> Any:
        if isinstance(data, _Ref):
            return Secret(str(data))
        if isinstance(data, str) and literal_allowed:
            return Secret(data)
        if isinstance(data, str):
            self.problem(
                path,
                "secrets must not be written in the file: use ${env:NAME}, "
                "${file:/absolute/path} or ${credential:NAME}",
            )
        else:
            expected = "a string" if literal_allowed else "a secret reference such as ${env:NAME}"
            self.problem(path, f"expected {expected}, got {_describe_value(data, secret=True)}")
        return _INVALID

    def convert_scalar(self, data: Any, tp: Any, path: _Path) -> Any:
        plain = str(data) if isinstance(data, _Ref) else data
        try:
            value = msgspec.convert(plain, tp)
        except msgspec.ValidationError:
            # msgspec only ever sees one scalar here (containers and Structs are walked
            # above), so its message adds nothing to ours: the path is always `$`.
            self.problem(path, self.scalar_message(data, tp, path))
            return _INVALID
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(path, f"expected {_describe_type(tp)}, got {_describe_value(data)}")
            return _INVALID
        return value

    @staticmethod
    def scalar_message(data: Any, tp: Any, path: _Path) -> str:
        message = f"expected {_describe_type(tp)}, got {_describe_value(data)}"
        literal = _literal_choices(tp)
        if literal and isinstance(data, str):
            close = difflib.get_close_matches(data, [str(c) for c in literal], n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        key = path[-1] if path else ""
        if isinstance(key, str) and key.endswith("_s") and isinstance(data, str):
            message += "; durations are plain numbers of seconds, e.g. 10 or 0.5"
        elif isinstance(data, str) and _is_number(data) and _unannotated(tp) in (int, float):
            message += " (remove the quotes)"
        return message


_S = TypeVar("_S", bound=_Settings)


class _Problem(str):
    """A resolution failure message (distinct from a resolved value)."""


class _ScalarError(Exception):
    """A YAML scalar could not be built (bad tag or malformed typed value)."""


class _FileTooLargeError(OSError):
    """A file is larger than the limit its reader accepts (nothing was parsed)."""


def _read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The content of ``path``, refusing anything that could hang or explode a reader.

    The file is opened without blocking (a FIFO without a writer, a device) and must be
    a regular file of at most ``max_bytes`` bytes: checked on the open descriptor before
    anything is read, and again while reading (a file that grows). Raises
    :class:`_FileTooLargeError`, ``OSError`` (``IsADirectoryError`` for a directory, an
    ``OSError`` naming the file type for anything else that is not a regular file).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if info.st_size > max_bytes:
            raise _FileTooLargeError(
                errno.EFBIG, f"the file has {info.st_size} bytes; at most {max_bytes} are read"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise _FileTooLargeError(
                    errno.EFBIG, f"the file grew past {max_bytes} bytes while being read"
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


_FILE_KINDS: Final = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _read_secret_file(path: Path, label: str, *, credential: bool = False) -> str | _Problem:
    where = (
        f"credential {path.name!r} in $CREDENTIALS_DIRECTORY ({path.parent})"
        if credential
        else f"file {path}"
    )
    try:
        raw = _read_regular_file(path, _SECRET_FILE_MAX_BYTES)
    except FileNotFoundError:
        return _Problem(f"{label}: {where} does not exist")
    except IsADirectoryError:
        return _Problem(f"{label}: {where} is a directory")
    except PermissionError:
        return _Problem(f"{label}: cannot read {where}: permission denied")
    except _FileTooLargeError:
        return _Problem(f"{label}: {where} is larger than {_SECRET_FILE_MAX_BYTES} bytes")
    except (OSError, ValueError) as exc:
        return _Problem(f"{label}: cannot read {where}: {getattr(exc, 'strerror', None) or exc}")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Problem(f"{label}: {where} is not UTF-8 text")
    # Files written with `echo` end in a newline that is not part of the secret.
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        return _Problem(f"{label}: {where} is empty")
    return value


# --------------------------------------------------------------------------- message helpers


def _format_path(path: _Path) -> str:
    """``("sessions", 3, "template")`` → ``sessions[3].template``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _unknown_key_message(key: str, known: Sequence[str], context: str = "") -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown key {key!r}{context} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}{context} (expected one of: {', '.join(known)})"


def _unannotated(tp: Any) -> Any:
    return get_args(tp)[0] if _get_origin(tp) is Annotated else tp


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _literal_choices(tp: Any) -> tuple[Any, ...]:
    if _get_origin(tp) is Literal:
        return get_args(tp)
    return ()


def _describe_type(tp: Any) -> str:
    """A reader's name for a scalar type: ``a number > 0``, ``one of: a, b``."""
    meta: list[msgspec.Meta] = []
    if _get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        meta = [m for m in extra if isinstance(m, msgspec.Meta)]
    choices = _literal_choices(tp)
    if choices:
        return "one of: " + ", ".join(str(c) for c in choices)
    base = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )
    for m in meta:
        if m.description:
            return m.description
        if m.min_length == 1:
            return "a non-empty string"
        low = m.gt if m.gt is not None else m.ge
        if low is not None and m.le is not None:
            return f"{base} from {low:g} to {m.le:g}"
        if m.gt is not None:
            return f"{base} > {m.gt:g}"
        if m.ge is not None:
            return f"{base} >= {m.ge:g}"
    return base


def _describe_value(value: Any, *, secret: bool = False) -> str:
    """How a value is shown in a message (never a resolved secret's content)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Ref):
        return f"a string (from {value.reference})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown)
    if isinstance(value, int | float):
        return "a number" if secret else repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} value"
