"""Sample values the tests, benchmarks and the soak share: STT/TTS settings (as YAML for
configuration files and as wire objects for sessions), secrets, the bundled caller
audio, small daemon configurations and signed SIP webhooks.

Every configuration listens on ``127.0.0.1:0``: the daemon binds a free port and says
which (``Daemon.http_urls``; the ``http server listening`` log line for a subprocess),
so no test picks a port that something else may take first.
"""

from __future__ import annotations

import json
import textwrap
import time
import wave
from pathlib import Path
from typing import Any, Final

from saynad.config import SessionSpec, load_config_text
from saynad.protocol.messages import STTConfig, TTSConfig
from saynad.protocol.webhooks import (
    SipWebhook,
    WebhookParticipant,
    WebhookRoom,
    encode_webhook_payload,
    sign_webhook,
)

LISTEN_ANY: Final = "127.0.0.1:0"
"""``http.listen`` for tests: any free port, read back once bound."""

SECRET: Final = "test-webhook-secret-0123456789"
TOKEN: Final = "test-control-token-0123456789"
OPERATOR_TOKEN: Final = "test-operator-token-0123456789"
"""An API token of :func:`daemon_config` (``api=True``) with every scope."""
DIALLER_TOKEN: Final = "test-dialler-token-0123456789"
"""An API token with the ``calls`` and ``read`` scopes (not ``control``)."""
READER_TOKEN: Final = "test-reader-token-0123456789"
"""An API token with the ``read`` scope only."""
ENV: Final = {
    "SAYNAD_TEST_WEBHOOK_SECRET": SECRET,
    "SAYNAD_TEST_CONTROL_TOKEN": TOKEN,
    "SAYNAD_TEST_OPERATOR_TOKEN": OPERATOR_TOKEN,
    "SAYNAD_TEST_DIALLER_TOKEN": DIALLER_TOKEN,
    "SAYNAD_TEST_READER_TOKEN": READER_TOKEN,
}
"""What the sample configurations' ``${env:…}`` references resolve against."""

CALLER_ID: Final = "+15550001000"
"""``outbound.from_phone_number`` of :func:`daemon_config` (``api=True``)."""

CALLER_WAV: Final = Path(__file__).resolve().parents[2] / "saynad" / "data" / "demo-caller.wav"
"""The bundled caller audio: 16 kHz mono, what :data:`STT_YAML` expects."""

# --------------------------------------------------------------------------- STT and TTS

STT_CONFIG: Final = STTConfig(
    provider="deepgram",
    language="en-US",
    sample_rate=16000,
    channels=1,
    punctuation=True,
    encoding="linear16",
    model="nova-3",
)
"""The ``stt_config`` of the sample sessions (16 kHz mono linear16)."""

TTS_CONFIG: Final = TTSConfig(provider="deepgram", model="aura-asteria-en")
"""The ``tts_config`` of the sample sessions (the server's default audio)."""

STT_YAML: Final = (
    "{provider: deepgram, language: en-US, sample_rate: 16000, channels: 1, "
    "punctuation: true, encoding: linear16, model: nova-3}"
)
"""``stt`` of a sample template, as a YAML flow mapping: :data:`STT_CONFIG`."""


def tts_yaml(*, voice_id: str | None = "aura-asteria-en", sample_rate: int | None = 16000) -> str:
    """``tts`` of a sample template, as a YAML flow mapping (Deepgram, ``aura-2``)."""
    fields = ["provider: deepgram", "model: aura-2"]
    if voice_id is not None:
        fields.append(f"voice_id: {voice_id}")
    if sample_rate is not None:
        fields.append(f"sample_rate: {sample_rate}")
    return "{" + ", ".join(fields) + "}"


TTS_YAML: Final = tts_yaml()
"""``tts`` of the sample templates: 16 kHz audio, like the caller's."""

# --------------------------------------------------------------------------- configurations


def _head(
    *,
    emulator: str,
    listen: str,
    drain_s: float,
    control: bool = False,
    api: bool = False,
    webhooks: str | None = None,
) -> list[str]:
    """The sections before the templates: the embedded emulator with ``emulator`` (a
    YAML flow mapping), the HTTP server (``webhooks``: its ``http.webhooks``, a YAML
    flow mapping), JSON logs, quick backoff, the drain; with ``api``, the API tokens and
    the outbound caller id."""
    lines = ["sayna:", f"  emulator: {emulator}", "http:", f'  listen: "{listen}"']
    if control:
        lines.append("  control_token: ${env:SAYNAD_TEST_CONTROL_TOKEN}")
    if webhooks is not None:
        lines.append(f"  webhooks: {webhooks}")
    if api:
        lines += [
            "  tokens:",
            '    - {name: operator, token: "${env:SAYNAD_TEST_OPERATOR_TOKEN}", '
            "scopes: [read, calls, control]}",
            '    - {name: dialler, token: "${env:SAYNAD_TEST_DIALLER_TOKEN}", '
            "scopes: [calls, read]}",
            '    - {name: reader, token: "${env:SAYNAD_TEST_READER_TOKEN}", scopes: [read]}',
            "outbound:",
            f'  from_phone_number: "{CALLER_ID}"',
        ]
    return [
        *lines,
        "logging: {level: info, format: json}",
        "defaults:",
        "  backoff: {initial_s: 0.1, max_s: 1}",
        f"  drain_timeout_s: {drain_s}",
    ]


def _inbound(
    *, max_sessions: int = 5, max_duration_s: float = 3600, max_body_bytes: int = 65536
) -> list[str]:
    """A SIP webhook (the sample secret) starting sessions of template ``call``."""
    return [
        "inbound:",
        "  sip_webhook:",
        "    template: call",
        "    secrets:",
        "      - ${env:SAYNAD_TEST_WEBHOOK_SECRET}",
        f"    max_sessions: {max_sessions}",
        f"    max_duration_s: {max_duration_s}",
        f"    max_body_bytes: {max_body_bytes}",
    ]


def _call_template(behaviours: str = "", *, outbound: bool = False) -> list[str]:
    """Template ``call``: joins the caller's LiveKit room and greets (``outbound``: it
    may place calls too)."""
    return [
        "  call:",
        f"    stt: {STT_YAML}",
        f"    tts: {TTS_YAML}",
        "    livekit: {}",
        *(["    outbound: true"] if outbound else []),
        "    behaviours:",
        '      greeting: {text: "hello caller"}' + behaviours,
    ]


def daemon_config(
    *,
    listen: str = LISTEN_ANY,
    sessions: tuple[str, ...] = ("lobby",),
    inbound: bool = True,
    control: bool = False,
    max_sessions: int = 5,
    max_duration_s: float = 3600,
    max_body_bytes: int = 65536,
    drain_s: float = 2.0,
    goodbye: str | None = None,
    call_end: str = "",
    talk: bool = False,
    webhooks: str | None = None,
    api: bool = False,
) -> str:
    """A small daemon configuration on the embedded emulator: always-on ``sessions``
    (template ``voice``: a greeting) and, with ``inbound``, a SIP webhook starting
    sessions of template ``call`` (``webhooks``: on the listener of ``http.webhooks``,
    this YAML flow mapping). ``api``: the API tokens (:data:`OPERATOR_TOKEN`,
    :data:`DIALLER_TOKEN`, :data:`READER_TOKEN`), and template ``call`` places outbound
    calls (caller id :data:`CALLER_ID`).

    ``talk``: the always-on sessions stream the bundled caller audio and echo back what
    the emulator's STT hears (transcripts, replies, barge-ins).
    """
    end = f"\n      end: {{goodbye_text: {json.dumps(goodbye)}}}" if goodbye else ""
    if talk:
        end += (
            "\n      agent: {kind: echo}"
            f"\n      audio: {{source: {{path: {json.dumps(str(CALLER_WAV))}, loop: true}}}}"
        )
    lines = _head(
        emulator="{utterance_ms: 500, interim_ms: 250, tts_ms_per_char: 20}",
        listen=listen,
        drain_s=drain_s,
        control=control,
        webhooks=webhooks,
        api=api,
    )
    if inbound:
        lines += _inbound(
            max_sessions=max_sessions,
            max_duration_s=max_duration_s,
            max_body_bytes=max_body_bytes,
        )
    elif api:
        lines += ["admission:", f"  max_sessions: {max_sessions}"]
    lines += [
        "templates:",
        "  voice:",
        f"    stt: {STT_YAML}",
        f"    tts: {TTS_YAML}",
        "    behaviours:",
        '      greeting: {text: "hello"}' + end,
        *_call_template(call_end, outbound=api),
        "sessions:" + ("" if sessions else " []"),
    ]
    lines += [f"  - {{name: {name}, template: voice}}" for name in sessions]
    return "\n".join(lines) + "\n"


def greeting_fleet(names: dict[str, str], *, listen: str = LISTEN_ANY, drain_s: float = 2.0) -> str:
    """A fleet of sessions ``name → greeting text`` on the embedded emulator."""
    sessions = "".join(
        f"  - name: {name}\n    template: voice\n    behaviours:\n"
        f'      greeting: {{text: "{text}"}}\n'
        for name, text in names.items()
    )
    return f"""
sayna:
  emulator:
    utterance_ms: 500
http:
  listen: "{listen}"
logging:
  level: info
  format: json
defaults:
  backoff: {{ initial_s: 0.1, max_s: 1 }}
  drain_timeout_s: {drain_s}
templates:
  voice:
    stt: {STT_YAML}
    tts: {tts_yaml(sample_rate=None)}
    behaviours:
      greeting: {{text: "hello"}}
sessions:
{sessions}
"""


def write_fleet(path: Path, names: dict[str, str], *, drain_s: float = 2.0) -> None:
    """Write :func:`greeting_fleet` to ``path``."""
    path.write_text(greeting_fleet(names, drain_s=drain_s))


def talking_fleet(
    *,
    transcripts: Path,
    listen: str = LISTEN_ANY,
    sessions: tuple[str, ...] = ("a", "b"),
    drain_s: float = 5.0,
    goodbye: str | None = None,
    inbound: bool = True,
    utterance_ms: int = 300,
    fsync: str = "never",
) -> str:
    """Sessions that stream the bundled caller audio (looped, real time) to the embedded
    emulator, which numbers its final transcripts (``"1: …"``); an echo agent answers;
    every line goes to ``transcripts/{session}.jsonl``."""
    goodbye_line = f"\n      end: {{goodbye_text: {json.dumps(goodbye)}}}" if goodbye else ""
    lines = _head(
        emulator=f"{{utterance_ms: {utterance_ms}, interim_ms: {utterance_ms // 2},"
        " tts_ms_per_char: 20, numbered: true}",
        listen=listen,
        drain_s=drain_s,
    )
    if inbound:
        lines += _inbound()
    lines += [
        "templates:",
        "  voice:",
        f"    stt: {STT_YAML}",
        f"    tts: {TTS_YAML}",
        "    behaviours:",
        "      agent: {kind: echo}",
        f"      audio: {{source: {{path: {json.dumps(str(CALLER_WAV))}, loop: true}}}}",
        "      transcripts:",
        f"        - {{kind: jsonl, path: {json.dumps(str(transcripts / '{session}.jsonl'))},"
        f" fsync: {fsync}}}" + goodbye_line,
        *_call_template(),
        "sessions:",
    ]
    lines += [f"  - {{name: {name}, template: voice}}" for name in sessions]
    return "\n".join(lines) + "\n"


def session_spec(
    tmp_path: Path, behaviours: str, *, extra: str = "", env: dict[str, str] | None = None
) -> SessionSpec:
    """The spec of one session ``e2e`` (16 kHz STT and TTS) with ``behaviours`` (YAML,
    dedented) and ``extra`` template keys; relative paths start at ``tmp_path``."""
    text = (
        "templates:\n"
        "  t:\n"
        f"    stt: {STT_YAML}\n"
        f"    tts: {tts_yaml(voice_id=None)}\n"
        f"{textwrap.indent(textwrap.dedent(extra), '    ')}"
        "    behaviours:\n"
        f"{textwrap.indent(textwrap.dedent(behaviours), '      ')}"
        "sessions:\n"
        "  - name: e2e\n"
        "    template: t\n"
    )
    return load_config_text(text, base_dir=tmp_path, env=env or {}).sessions[0]


def write_wav(path: Path, ms: int, rate: int = 16_000) -> Path:
    """A 16-bit mono WAV file of ``ms`` milliseconds of a constant sample."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x10\x00" * (rate * ms // 1000))
    return path


# --------------------------------------------------------------------------- SIP webhooks


def webhook_payload(room: str, *, caller: str = "+15551230001") -> SipWebhook:
    """A SIP webhook for a call from ``caller`` arriving in ``room``."""
    return SipWebhook(
        participant=WebhookParticipant(name="Caller", identity=f"sip_{caller}", sid="PA_test"),
        room=WebhookRoom(name=room, sid="RM_test"),
        from_phone_number=caller,
        to_phone_number="+15557654321",
        room_prefix="sip-",
        sip_host="sip.example.com",
        sip_headers={"x-to-ip": "sip.example.com", "x-customer": "acme"},
    )


def signed(
    body: bytes,
    event_id: str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The signature headers of a delivery of ``body`` (now, unless ``timestamp``)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return sign_webhook(secret, body, timestamp=stamp, event_id=event_id)


def signed_call(room: str, event_id: str, **kwargs: Any) -> tuple[dict[str, str], bytes]:
    """The headers and body of a signed SIP webhook for a call into ``room``."""
    body = encode_webhook_payload(webhook_payload(room))
    return signed(body, event_id, **kwargs), body
