"""WebSocket frames: what saynad encodes and decodes, against the reference's examples."""

from __future__ import annotations

import msgspec
import pytest

from saynad.errors import FrameDecodeError
from saynad.protocol.messages import (
    ApiKeyAuth,
    AzureAuth,
    ClearFrame,
    ConfigFrame,
    Error,
    GoogleAuth,
    LiveKitConfig,
    LoadingAudioConfig,
    LoadingStartFrame,
    LoadingStopFrame,
    Message,
    Participant,
    ParticipantConnected,
    ParticipantDisconnected,
    Pronunciation,
    Ready,
    RoomMessage,
    SendMessageFrame,
    SipTransferError,
    SipTransferFrame,
    SpeakFrame,
    STTConfig,
    STTResult,
    TrackSubscribed,
    TTSConfig,
    TTSPlaybackComplete,
    TurnDetectSettings,
    UpdateConfigFrame,
    VADEvent,
    VadSettings,
    decode_server_event,
    encode_client_frame,
)
from tests.support.samples import STT_CONFIG, TTS_CONFIG

# §10.1, verbatim.
FULL_CONFIG = (
    b'{"type":"config","stream_id":"call-2024-0001","audio":true,"stt_config":{"provider":'
    b'"deepgram","language":"en-US","sample_rate":24000,"channels":1,"punctuation":true,'
    b'"encoding":"linear16","model":"nova-3"},"tts_config":{"provider":"elevenlabs","model":'
    b'"eleven_multilingual_v2","voice_id":"21m00Tcm4TlvDq8ikWAM","speaking_rate":1.0,'
    b'"audio_format":"linear16","sample_rate":24000,"pronunciations":[{"word":"API",'
    b'"pronunciation":"A P I"}],"auth":{"api_key":"el-session-key"}},"livekit":{"room_name":'
    b'"call-2024-0001","enable_recording":false,"sayna_participant_identity":"sayna-ai",'
    b'"sayna_participant_name":"Sayna AI","listen_participants":[]}}'
)
MINIMAL_CONFIG = (
    b'{"type":"config","stt_config":{"provider":"deepgram","language":"en-US","sample_rate":'
    b'16000,"channels":1,"punctuation":true,"encoding":"linear16","model":"nova-3"},'
    b'"tts_config":{"provider":"deepgram","model":"aura-asteria-en"}}'
)
DATA_ONLY_CONFIG = b'{"type":"config","audio":false,"livekit":{"room_name":"chat-42"}}'
# §10.2, verbatim.
READY_LIVEKIT = (
    b'{"type":"ready","stream_id":"call-2024-0001","livekit_room_name":"call-2024-0001",'
    b'"livekit_url":"wss://livekit.example.com","sayna_participant_identity":"sayna-ai",'
    b'"sayna_participant_name":"Sayna AI"}'
)
READY_PLAIN = (
    b'{"type":"ready","stream_id":"550e8400-e29b-41d4-a716-446655440000",'
    b'"livekit_url":"http://localhost:7880"}'
)

STT_16K = STT_CONFIG
TTS_DEEPGRAM = TTS_CONFIG


def full_config_frame() -> ConfigFrame:
    return ConfigFrame(
        stream_id="call-2024-0001",
        audio=True,
        stt_config=STTConfig(
            provider="deepgram",
            language="en-US",
            sample_rate=24000,
            channels=1,
            punctuation=True,
            encoding="linear16",
            model="nova-3",
        ),
        tts_config=TTSConfig(
            provider="elevenlabs",
            model="eleven_multilingual_v2",
            voice_id="21m00Tcm4TlvDq8ikWAM",
            speaking_rate=1.0,
            audio_format="linear16",
            sample_rate=24000,
            pronunciations=(Pronunciation(word="API", pronunciation="A P I"),),
            auth=ApiKeyAuth(api_key="el-session-key"),
        ),
        livekit=LiveKitConfig(
            room_name="call-2024-0001",
            enable_recording=False,
            sayna_participant_identity="sayna-ai",
            sayna_participant_name="Sayna AI",
            listen_participants=(),
        ),
    )


# --------------------------------------------------------------------------- encoding


def test_full_config_matches_reference_example() -> None:
    assert encode_client_frame(full_config_frame()) == FULL_CONFIG


def test_minimal_config_matches_reference_example() -> None:
    frame = ConfigFrame(stt_config=STT_16K, tts_config=TTS_DEEPGRAM)
    assert encode_client_frame(frame) == MINIMAL_CONFIG


def test_data_only_config_matches_reference_example() -> None:
    frame = ConfigFrame(audio=False, livekit=LiveKitConfig(room_name="chat-42"))
    assert encode_client_frame(frame) == DATA_ONLY_CONFIG


def test_config_with_loading_audio_omits_unset_fields() -> None:
    frame = ConfigFrame(
        audio=False,
        livekit=LiveKitConfig(room_name="r"),
        loading_audio=LoadingAudioConfig(data="AAAA", format="pcm", sample_rate=16000),
    )
    assert encode_client_frame(frame) == (
        b'{"type":"config","audio":false,"livekit":{"room_name":"r"},'
        b'"loading_audio":{"data":"AAAA","format":"pcm","sample_rate":16000}}'
    )


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (ApiKeyAuth(api_key="k"), b'{"api_key":"k"}'),
        (AzureAuth(api_key="k", region="westeurope"), b'{"api_key":"k","region":"westeurope"}'),
        (
            GoogleAuth(credentials={"type": "service_account"}),
            b'{"credentials":{"type":"service_account"}}',
        ),
        (GoogleAuth(credentials="/srv/key.json"), b'{"credentials":"/srv/key.json"}'),
    ],
)
def test_provider_auth_objects_are_flat(auth: object, expected: bytes) -> None:
    stt = msgspec.structs.replace(STT_16K, auth=auth)
    encoded = encode_client_frame(ConfigFrame(stt_config=stt, tts_config=TTS_DEEPGRAM))
    assert b'"auth":' + expected + b"}" in encoded


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            SpeakFrame(text="Hello"),
            b'{"type":"speak","text":"Hello","flush":true,"allow_interruption":true}',
        ),
        (
            SpeakFrame(text="Hi", flush=False, allow_interruption=False),
            b'{"type":"speak","text":"Hi","flush":false,"allow_interruption":false}',
        ),
        (ClearFrame(), b'{"type":"clear"}'),
        (
            SendMessageFrame(message="hi", role="user"),
            b'{"type":"send_message","message":"hi","role":"user"}',
        ),
        (
            SendMessageFrame(message="hi", role="user", topic="chat", debug={"k": [1, None]}),
            b'{"type":"send_message","message":"hi","role":"user","topic":"chat",'
            b'"debug":{"k":[1,null]}}',
        ),
        (
            SipTransferFrame(transfer_to="+15551234567"),
            b'{"type":"sip_transfer","transfer_to":"+15551234567"}',
        ),
        (UpdateConfigFrame(), b'{"type":"update_config"}'),
        (
            UpdateConfigFrame(
                vad=VadSettings(silence_duration_ms=300),
                turn_detect=TurnDetectSettings(threshold=0.6),
            ),
            b'{"type":"update_config","vad":{"silence_duration_ms":300},'
            b'"turn_detect":{"threshold":0.6}}',
        ),
        (LoadingStartFrame(), b'{"type":"loading_start"}'),
        (LoadingStopFrame(), b'{"type":"loading_stop"}'),
    ],
)
def test_command_frames(frame: object, expected: bytes) -> None:
    assert encode_client_frame(frame) == expected  # type: ignore[arg-type]


# --------------------------------------------------------------------------- decoding


def test_ready_examples_decode_and_reencode_byte_for_byte() -> None:
    with_livekit = decode_server_event(READY_LIVEKIT)
    assert with_livekit == Ready(
        stream_id="call-2024-0001",
        livekit_room_name="call-2024-0001",
        livekit_url="wss://livekit.example.com",
        sayna_participant_identity="sayna-ai",
        sayna_participant_name="Sayna AI",
    )
    plain = decode_server_event(READY_PLAIN)
    assert plain == Ready(
        stream_id="550e8400-e29b-41d4-a716-446655440000", livekit_url="http://localhost:7880"
    )
    assert isinstance(plain, Ready)
    assert plain.livekit_room_name is None
    # The emulator encodes these structs: absent fields must stay absent.
    assert msgspec.json.encode(with_livekit) == READY_LIVEKIT
    assert msgspec.json.encode(plain) == READY_PLAIN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"type":"stt_result","transcript":"I\'d like to check my order","is_final":true,'
            b'"is_speech_final":false,"confidence":0.94}',
            STTResult(
                transcript="I'd like to check my order",
                is_final=True,
                is_speech_final=False,
                confidence=0.94,
            ),
        ),
        (
            b'{"type":"stt_result","transcript":"","is_final":true,"is_speech_final":true,'
            b'"confidence":1.0}',
            STTResult(transcript="", is_final=True, is_speech_final=True, confidence=1.0),
        ),
        (
            b'{"type":"error","message":"STT configuration is required when audio=true"}',
            Error(message="STT configuration is required when audio=true"),
        ),
        (
            b'{"type":"sip_transfer_error",'
            b'"message":"No SIP participant found in room to transfer"}',
            SipTransferError(message="No SIP participant found in room to transfer"),
        ),
        (
            b'{"type":"tts_playback_complete","timestamp":1700000000123}',
            TTSPlaybackComplete(timestamp=1700000000123),
        ),
        (
            b'{"type":"message","message":{"data":"AAE=","identity":"server","topic":"default",'
            b'"room":"livekit","timestamp":5}}',
            Message(
                message=RoomMessage(
                    data="AAE=", identity="server", topic="default", room="livekit", timestamp=5
                )
            ),
        ),
        (
            b'{"type":"participant_connected","participant":{"identity":"caller","name":"",'
            b'"room":"r","timestamp":5}}',
            ParticipantConnected(
                participant=Participant(identity="caller", name="", room="r", timestamp=5)
            ),
        ),
        (
            b'{"type":"participant_disconnected","participant":{"identity":"caller",'
            b'"room":"r","timestamp":5}}',
            ParticipantDisconnected(
                participant=Participant(identity="caller", room="r", timestamp=5)
            ),
        ),
        (
            b'{"type":"vad_event","event":"turn_end","timestamp_ms":7}',
            VADEvent(event="turn_end", timestamp_ms=7),
        ),
    ],
)
def test_server_events_decode(raw: bytes, expected: object) -> None:
    assert decode_server_event(raw) == expected
    assert decode_server_event(raw.decode()) == expected


def test_track_subscribed_and_unknown_keys_are_tolerated() -> None:
    event = decode_server_event(
        '{"type":"track_subscribed","future":1,"track":{"identity":"c","track_kind":"audio",'
        '"track_sid":"TR_1","room":"r","timestamp":3,"extra":"x"}}'
    )
    assert isinstance(event, TrackSubscribed)
    assert event.track.track_sid == "TR_1"
    assert event.track.name is None


@pytest.mark.parametrize(
    ("raw", "kind", "frame_type"),
    [
        ("not json", "not_json", None),
        ("[1, 2]", "not_object", None),
        ('{"no_type": 1}', "invalid", None),
        ('{"type": 5}', "invalid", None),
        ('{"type":"brand_new_event","x":1}', "unknown_type", "brand_new_event"),
        ('{"type":"stt_result","transcript":"x"}', "invalid", "stt_result"),
        ('{"type":"error","message":5}', "invalid", "error"),
    ],
)
def test_undecodable_frames_are_classified(raw: str, kind: str, frame_type: str | None) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_server_event(raw)
    assert info.value.kind == kind
    assert info.value.frame_type == frame_type
