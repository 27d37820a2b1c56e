"""What a session is made of: templates, session entries and their parts.

``stt``, ``tts``, ``livekit`` and ``loading_audio`` map onto the protocol's objects
(their ``to_wire`` methods build those); ``behaviours`` says what a session does once
ready (greeting, agent, transcript sinks, local audio, end rules). A
:class:`SessionEntry` is decoded over its template, so what it leaves out is the
template's; :mod:`saynad.config._specs` resolves the two into a session's spec.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from saynad.config._schema import (
    BackoffSettings,
    IntensitySettings,
    KeepaliveSettings,
    Problems,
    Settings,
)
from saynad.config._values import (
    AsyncFunction,
    AudioSinkDir,
    FrozenMap,
    HeaderValue,
    HttpUrl,
    Name,
    NonNegativeInt,
    PositiveInt,
    RestartPolicy,
    RoomName,
    Seconds,
    Secret,
    StreamId,
    Text,
    TranscriptPath,
    unset,
)
from saynad.protocol.messages import (
    UNSET,
    ApiKeyAuth,
    AzureAuth,
    GoogleAuth,
    LiveKitConfig,
    LoadingAudioConfig,
    Pronunciation,
    ProviderAuth,
    STTConfig,
    TTSConfig,
)

__all__ = [
    "AgentSettings",
    "AudioSettings",
    "AudioSinkSettings",
    "AudioSourceSettings",
    "Behaviours",
    "EchoAgentSettings",
    "EndSettings",
    "GreetingSettings",
    "HttpAgentSettings",
    "HttpSinkSettings",
    "JsonlSinkSettings",
    "LiveKitSettings",
    "LoadingAudioSettings",
    "OpenAIAgentSettings",
    "PronunciationSettings",
    "ProviderAuthSettings",
    "PythonAgentSettings",
    "SessionEntry",
    "SttSettings",
    "Template",
    "TranscriptSinkSettings",
    "TtsSettings",
]


class ProviderAuthSettings(Settings, frozen=True, kw_only=True):
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


class SttSettings(Settings, frozen=True, kw_only=True):
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


class PronunciationSettings(Settings, frozen=True, kw_only=True):
    """One whole-word replacement applied before synthesis."""

    word: Text
    pronunciation: Text


class TtsSettings(Settings, frozen=True, kw_only=True):
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
            voice_id=unset(self.voice_id),
            speaking_rate=unset(self.speaking_rate),
            audio_format=unset(self.audio_format),
            sample_rate=unset(self.sample_rate),
            connection_timeout=unset(self.connection_timeout_s),
            request_timeout=unset(self.request_timeout_s),
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


class LiveKitSettings(Settings, frozen=True, kw_only=True):
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
            enable_recording=unset(self.enable_recording),
            sayna_participant_identity=unset(self.sayna_participant_identity),
            sayna_participant_name=unset(self.sayna_participant_name),
            listen_participants=unset(self.listen_participants),
        )


class LoadingAudioSettings(Settings, frozen=True, kw_only=True):
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
            format=unset(self.format),
            sample_rate=unset(self.sample_rate),
            channels=unset(self.channels),
            volume=unset(self.volume),
        )

    def _problems(self) -> Problems:
        if self.format == "pcm" and self.sample_rate is None:
            yield ("sample_rate",), "required when format is pcm"


class GreetingSettings(Settings, frozen=True, kw_only=True):
    """``behaviours.greeting``: say ``text`` when the session is ready or someone joins."""

    text: Text
    when: Literal["ready", "first_participant"] = "ready"
    allow_interruption: bool = True


class _AgentBase(Settings, tag_field="kind", frozen=True, kw_only=True):
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


class _SinkBase(Settings, tag_field="kind", frozen=True, kw_only=True):
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


class AudioSourceSettings(Settings, frozen=True, kw_only=True):
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


class AudioSinkSettings(Settings, frozen=True, kw_only=True):
    """``behaviours.audio.sink``: write the session's TTS audio under ``dir``."""

    dir: AudioSinkDir


class AudioSettings(Settings, frozen=True, kw_only=True):
    """``behaviours.audio``: a local audio source and/or sink."""

    source: AudioSourceSettings | None = None
    sink: AudioSinkSettings | None = None


class EndSettings(Settings, frozen=True, kw_only=True):
    """``behaviours.end``: when a session ends on its own (then its policy decides)."""

    on_participant_disconnected: bool = False
    max_duration_s: Seconds | None = None
    idle_timeout_s: Seconds | None = None
    goodbye_text: Text | None = None


class Behaviours(Settings, frozen=True, kw_only=True):
    """``behaviours``: what a session does once ready. Unset behaviours are off."""

    greeting: GreetingSettings | None = None
    agent: AgentSettings | None = None
    transcripts: tuple[TranscriptSinkSettings, ...] = ()
    audio: AudioSettings | None = None
    end: EndSettings | None = None


class Template(Settings, frozen=True, kw_only=True):
    """``templates.NAME``: a session blueprint.

    The policy fields (``restart`` … ``keepalive``) default to the ``defaults`` section;
    a partial ``backoff``/``intensity``/``keepalive`` mapping is merged over it.
    ``outbound: true`` lets ``POST /v1/calls`` place calls with it (it then needs a
    ``livekit`` section: the callee is dialled into the session's room).
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
    outbound: bool = False

    def _problems(self) -> Problems:
        if self.outbound and self.livekit is None:
            yield (
                ("outbound",),
                "an outbound call dials the callee into the session's LiveKit room: "
                "add a livekit section (livekit: {} will do)",
            )


class SessionEntry(Settings, frozen=True, kw_only=True):
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
