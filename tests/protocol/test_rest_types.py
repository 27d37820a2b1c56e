"""REST bodies (§6): exact encodings, tolerant decoding, error bodies, Retry-After, phones."""

from __future__ import annotations

import ast
import email.utils
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from saynad.protocol import rest
from saynad.protocol.messages import ApiKeyAuth, Pronunciation, TTSConfig
from saynad.protocol.phone import normalize_phone_number, phone_number_problem
from saynad.protocol.rest import (
    DeleteSipHooksRequest,
    ErrorBody,
    HealthResponse,
    LiveKitRoomDetails,
    LiveKitRoomsResponse,
    LiveKitTokenRequest,
    LiveKitTokenResponse,
    MuteParticipantRequest,
    MuteParticipantResponse,
    RemoveParticipantRequest,
    RemoveParticipantResponse,
    SetSipHooksRequest,
    SipCallRequest,
    SipCallResponse,
    SipCallSipConfig,
    SipHook,
    SipHooksResponse,
    SipTransferRequest,
    SipTransferResponse,
    SpeakRequest,
    VoiceDescriptor,
    Voices,
    decode_error_body,
    parse_retry_after,
    recording_path,
    room_path,
)

enc = msgspec.json.Encoder()


def test_rest_and_phone_modules_import_neither_trio_nor_httpx() -> None:
    for module in (rest, __import__("saynad.protocol.phone", fromlist=["x"])):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"trio", "httpx", "trio_websocket"}, module.__name__


# --------------------------------------------------------------------------- request encodings


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            LiveKitTokenRequest("room-1", "Alice", "alice-1"),
            b'{"room_name":"room-1","participant_name":"Alice","participant_identity":"alice-1"}',
        ),
        (
            RemoveParticipantRequest("room-1", "alice-1"),
            b'{"room_name":"room-1","participant_identity":"alice-1"}',
        ),
        (
            MuteParticipantRequest("room-1", "alice-1", "TR_1", True),
            b'{"room_name":"room-1","participant_identity":"alice-1","track_sid":"TR_1",'
            b'"muted":true}',
        ),
        (
            SetSipHooksRequest((SipHook("example.com", "https://h.example/x", "tenant-1"),)),
            b'{"hooks":[{"host":"example.com","url":"https://h.example/x","auth_id":"tenant-1"}]}',
        ),
        (SetSipHooksRequest(()), b'{"hooks":[]}'),
        (DeleteSipHooksRequest(("a.com", "B.com")), b'{"hosts":["a.com","B.com"]}'),
        (
            SipTransferRequest("room-1", "sip-1", "+15551234567"),
            b'{"room_name":"room-1","participant_identity":"sip-1","transfer_to":"+15551234567"}',
        ),
        (
            SipCallRequest("r", "John", "c-1", "+15105550123", "+15551234567"),
            b'{"room_name":"r","participant_name":"John","participant_identity":"c-1",'
            b'"from_phone_number":"+15105550123","to_phone_number":"+15551234567"}',
        ),
        (
            SipCallRequest(
                "r", "John", "c-1", "+1", "+2", SipCallSipConfig(outbound_address="sip.x:5060")
            ),
            b'{"room_name":"r","participant_name":"John","participant_identity":"c-1",'
            b'"from_phone_number":"+1","to_phone_number":"+2",'
            b'"sip":{"outbound_address":"sip.x:5060"}}',
        ),
        (SipCallSipConfig(), b"{}"),
        (
            SipCallSipConfig("a", "u", "p"),
            b'{"outbound_address":"a","auth_username":"u","auth_password":"p"}',
        ),
        (
            SpeakRequest("Hello", TTSConfig(provider="deepgram", model="aura-asteria-en")),
            b'{"text":"Hello","tts_config":{"provider":"deepgram","model":"aura-asteria-en"}}',
        ),
        (
            SpeakRequest(
                "Hi API",
                TTSConfig(
                    provider="elevenlabs",
                    model="eleven_multilingual_v2",
                    voice_id="21m00Tcm4TlvDq8ikWAM",
                    speaking_rate=1.0,
                    audio_format="linear16",
                    sample_rate=16000,
                    pronunciations=(Pronunciation("API", "A P I"),),
                    auth=ApiKeyAuth("el-key"),
                ),
            ),
            b'{"text":"Hi API","tts_config":{"provider":"elevenlabs",'
            b'"model":"eleven_multilingual_v2","voice_id":"21m00Tcm4TlvDq8ikWAM",'
            b'"speaking_rate":1.0,"audio_format":"linear16","sample_rate":16000,'
            b'"pronunciations":[{"word":"API","pronunciation":"A P I"}],'
            b'"auth":{"api_key":"el-key"}}}',
        ),
    ],
)
def test_request_bodies_encode_exactly(body: Any, expected: bytes) -> None:
    assert enc.encode(body) == expected
    assert b"null" not in enc.encode(body)


def test_request_structs_are_frozen() -> None:
    body = LiveKitTokenRequest("r", "n", "i")
    with pytest.raises(AttributeError):
        body.room_name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- response decoding


def test_responses_ignore_unknown_fields() -> None:
    decoded = msgspec.json.decode(
        b'{"status":"OK","version":"9.9","extra":{"a":[1]}}', type=HealthResponse
    )
    assert decoded == HealthResponse("OK")
    token = msgspec.json.decode(
        b'{"token":"t","room_name":"r","participant_identity":"i",'
        b'"livekit_url":"wss://lk","expires_at":1}',
        type=LiveKitTokenResponse,
    )
    assert token == LiveKitTokenResponse("t", "r", "i", "wss://lk")


def test_response_missing_required_field_fails() -> None:
    with pytest.raises(msgspec.ValidationError, match="livekit_url"):
        msgspec.json.decode(
            b'{"token":"t","room_name":"r","participant_identity":"i"}',
            type=LiveKitTokenResponse,
        )


def test_room_details_decode_the_documented_shape() -> None:
    body = (
        b'{"sid":"RM_xyz789","name":"conversation-room-123","num_participants":1,'
        b'"max_participants":10,"creation_time":1703123456,'
        b'"metadata":"{\\"auth_id\\": \\"tenant-123\\"}","active_recording":false,'
        b'"participants":[{"sid":"PA_abc123","identity":"user-alice-456","name":"Alice Smith",'
        b'"state":"ACTIVE","kind":"SIP","joined_at":1703123456,"metadata":"",'
        b'"attributes":{"sip.phoneNumber":"+1555"},"is_publisher":true,"future":1}]}'
    )
    room = msgspec.json.decode(body, type=LiveKitRoomDetails)
    assert room.metadata == '{"auth_id": "tenant-123"}'
    assert room.max_participants == 10
    (participant,) = room.participants
    assert (participant.state, participant.kind) == ("ACTIVE", "SIP")
    assert participant.attributes == {"sip.phoneNumber": "+1555"}
    assert participant.is_publisher is True


def test_participant_state_and_kind_accept_new_values() -> None:
    body = (
        b'{"sid":"R","name":"n","num_participants":1,"max_participants":0,"creation_time":1,'
        b'"metadata":"","active_recording":false,"participants":[{"sid":"P","identity":"i",'
        b'"name":"","state":"HIBERNATING","kind":"ROBOT","joined_at":1,"metadata":"",'
        b'"attributes":{},"is_publisher":false}]}'
    )
    room = msgspec.json.decode(body, type=LiveKitRoomDetails)
    assert room.participants[0].state == "HIBERNATING"
    assert room.participants[0].kind == "ROBOT"


def test_other_responses_decode() -> None:
    rooms = msgspec.json.decode(
        b'{"rooms":[{"name":"a","num_participants":2,"creation_time":1703123456}]}',
        type=LiveKitRoomsResponse,
    )
    assert rooms.rooms[0].name == "a"
    assert msgspec.json.decode(
        b'{"status":"removed","room_name":"r","participant_identity":"p"}',
        type=RemoveParticipantResponse,
    ) == RemoveParticipantResponse("removed", "r", "p")
    assert msgspec.json.decode(
        b'{"room_name":"r","participant_identity":"p","track_sid":"T","muted":false}',
        type=MuteParticipantResponse,
    ) == MuteParticipantResponse("r", "p", "T", False)
    assert msgspec.json.decode(
        b'{"hooks":[{"host":"h","url":"u","auth_id":""}]}', type=SipHooksResponse
    ) == SipHooksResponse((SipHook("h", "u", ""),))
    assert msgspec.json.decode(
        b'{"status":"initiated","room_name":"r","participant_identity":"p",'
        b'"participant_id":"PA_1","sip_call_id":"SC_1"}',
        type=SipCallResponse,
    ) == SipCallResponse("initiated", "r", "p", "PA_1", "SC_1")


@pytest.mark.parametrize("status", ["completed", "initiated"])
def test_transfer_status_values(status: str) -> None:
    body = (
        b'{"status":"' + status.encode() + b'","room_name":"r","participant_identity":"p",'
        b'"transfer_to":"tel:+1555"}'
    )
    decoded = msgspec.json.decode(body, type=SipTransferResponse)
    assert decoded.status == status
    assert decoded.transfer_to == "tel:+1555"


def test_transfer_status_outside_the_documented_values_fails() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"status":"done","room_name":"r","participant_identity":"p","transfer_to":"t"}',
            type=SipTransferResponse,
        )


def test_voices_decode_with_tolerant_defaults() -> None:
    voices = msgspec.json.decode(
        b'{"deepgram":[{"id":"aura-asteria-en","sample":"","name":"Asteria",'
        b'"accent":"American","gender":"Female","language":"English"}],'
        b'"elevenlabs":[{"id":"x","name":"Rachel"}]}',
        type=Voices,
    )
    assert voices["deepgram"][0] == VoiceDescriptor(
        id="aura-asteria-en",
        name="Asteria",
        sample="",
        accent="American",
        gender="Female",
        language="English",
    )
    assert voices["elevenlabs"][0].accent == "Unknown"
    assert msgspec.json.decode(b"{}", type=Voices) == {}


# --------------------------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b'{"error":"missing_auth_header","message":"Missing authentication token"}',
            ErrorBody("missing_auth_header", None, "Missing authentication token"),
        ),
        (
            b'{"error":"Participant \'p\' not found in room \'r\'","code":"PARTICIPANT_NOT_FOUND"}',
            ErrorBody("Participant 'p' not found in room 'r'", "PARTICIPANT_NOT_FOUND"),
        ),
        (b'{"error":"Text cannot be empty"}', ErrorBody("Text cannot be empty")),
        (b'{"error":"x","extra":true}', ErrorBody("x")),
        # Framework rejections are plain text; proxies send HTML; bodies can be cut short.
        (b"Expected request with `Content-Type: application/json`", None),
        (b"<html><body>502 Bad Gateway</body></html>", None),
        (b'{"error":"Room not fou', None),
        (b"", None),
        (b'{"error":5}', None),
        (b'{"message":"no error key"}', None),
        (b'["error"]', None),
        (b"\xff\xfe garbage", None),
    ],
)
def test_decode_error_body(content: bytes, expected: ErrorBody | None) -> None:
    assert decode_error_body(content) == expected


# --------------------------------------------------------------------------- paths


def test_room_path_percent_encodes_one_segment_verbatim() -> None:
    assert room_path("support/line 1") == "/livekit/rooms/support%2Fline%201"
    assert room_path(" padded ") == "/livekit/rooms/%20padded%20"
    assert room_path("sip-+1555?x#y") == "/livekit/rooms/sip-%2B1555%3Fx%23y"
    assert room_path("héllo") == "/livekit/rooms/h%C3%A9llo"


def test_recording_path() -> None:
    assert recording_path("550e8400-e29b-41d4-a716-446655440000") == (
        "/recording/550e8400-e29b-41d4-a716-446655440000"
    )
    assert recording_path("a b") == "/recording/a%20b"


# --------------------------------------------------------------------------- Retry-After

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Tue, 32 Foo 2023 99:00:00 GMT", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    future = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(future, now=NOW) == pytest.approx(30.0)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0
    # "-0000" means UTC with an unknown local zone: still a usable date.
    naive = email.utils.formatdate(NOW + 10).replace("+0000", "-0000")
    assert parse_retry_after(naive, now=NOW) == pytest.approx(10.0)


# --------------------------------------------------------------------------- phone numbers


@pytest.mark.parametrize("number", ["+15551234567", "15551234567", "1234", " +1 ", "0", "+0"])
def test_valid_phone_numbers(number: str) -> None:
    assert phone_number_problem(number) is None
    assert normalize_phone_number(number) == number.strip()


@pytest.mark.parametrize(
    ("number", "detail"),
    [
        ("", "Phone number cannot be empty"),
        ("   ", "Phone number cannot be empty"),
        ("+", "Phone number must contain at least one digit"),
        (" + ", "Phone number must contain at least one digit"),
        (
            "++1",
            "Invalid character '+' at position 1 - plus sign is only allowed at the beginning",
        ),
        (
            "1+2",
            "Invalid character '+' at position 1 - plus sign is only allowed at the beginning",
        ),
        (
            " +1 555",
            "Invalid character ' ' at position 2 - only digits (0-9) and optional leading '+' "
            "are allowed",
        ),
        (
            "+1-555",
            "Invalid character '-' at position 2 - only digits (0-9) and optional leading '+' "
            "are allowed",
        ),
        (
            "tel:+1",
            "Invalid character 't' at position 0 - only digits (0-9) and optional leading '+' "
            "are allowed",
        ),
        (
            "+1٣",
            "Invalid character '٣' at position 2 - only digits (0-9) and optional leading '+' "
            "are allowed",
        ),
        (
            "+a",
            "Invalid character 'a' at position 1 - only digits (0-9) and optional leading '+' "
            "are allowed",
        ),
    ],
)
def test_invalid_phone_numbers(number: str, detail: str) -> None:
    assert phone_number_problem(number) == detail
    with pytest.raises(ValueError, match="^" + re.escape(detail) + "$"):
        normalize_phone_number(number)
