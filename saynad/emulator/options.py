"""What the emulator does: tenants, transcript script, synthetic audio and chaos."""

from __future__ import annotations

import msgspec

__all__ = ["Chaos", "EmulatorOptions", "Tenant"]

DEFAULT_SCRIPT: tuple[str, ...] = (
    "hello there",
    "I would like to check my order",
    "thank you very much",
)


class Tenant(msgspec.Struct, frozen=True):
    """An API secret and the tenant id (``auth.id``) it authenticates as."""

    id: str
    secret: str


class Chaos(msgspec.Struct, frozen=True):
    """Faults injected into every WebSocket session, for tests.

    ``drop_after_frames``: close the socket abruptly (code 1011) after sending that many
    frames. ``garbage_every``: send a non-JSON text frame before every N-th frame.
    ``latency_s``: delay each outgoing frame. ``refuse_handshake``: answer every upgrade
    with this HTTP status instead of accepting it.
    """

    drop_after_frames: int | None = None
    garbage_every: int | None = None
    latency_s: float = 0.0
    refuse_handshake: int | None = None


class EmulatorOptions(msgspec.Struct, frozen=True):
    """Everything that shapes the emulator's behaviour. The defaults need no setup.

    ``tenants``: when non-empty, authentication is required (``AUTH_REQUIRED=true``) and
    each tenant's secret is an accepted API key. ``script``: the transcripts the fake STT
    cycles through, one per ``utterance_ms`` of received audio. ``numbered``: prefix each
    final transcript with its sequence number on the connection (``"1: …"``), so tests
    can count loss. ``livekit``: whether the server has LiveKit credentials.
    ``recordings``: whether recording storage is configured. ``sip``: whether SIP is
    configured (hooks can be cached). ``sip_answer``: whether a callee dialled with
    ``POST /sip/call`` answers (joins the room at once) or lets it ring (nobody joins).
    TTS pacing: speech is ``tts_ms_per_char`` of audio
    per character, sent in ``tts_chunk_ms`` chunks at real-time pace, the first one
    ``tts_first_audio_ms`` after the ``speak`` is handled (a real provider's time to
    its first byte; 0, the default, sends it at once). ``read_interval_ms``: the
    shortest time between two passes of the reader of WebSocket frames (the direct
    server only): a frame that arrives within that time of the last pass waits for the
    next one, so that a busy emulator reads many sessions' frames per wake-up (as a
    server across a network would see them arrive, a little later); 0, the default,
    reads each frame as soon as it arrives.
    """

    tenants: tuple[Tenant, ...] = ()
    script: tuple[str, ...] = DEFAULT_SCRIPT
    utterance_ms: int = 1000
    interim_ms: int = 500
    numbered: bool = False
    tts_ms_per_char: int = 20
    tts_chunk_ms: int = 100
    tts_first_audio_ms: int = 0
    read_interval_ms: float = 0.0
    livekit: bool = True
    livekit_url: str = "http://localhost:7880"
    recordings: bool = True
    sip: bool = True
    sip_answer: bool = True
    chaos: Chaos = Chaos()

    @property
    def auth_required(self) -> bool:
        return bool(self.tenants)
