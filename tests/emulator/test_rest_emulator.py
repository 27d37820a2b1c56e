"""The emulator's REST API on the wire (§6): statuses, texts, check order, framework
rejections. Driven with plain httpx so every malformed request can be sent."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from saynad.emulator import Emulator, EmulatorOptions, Tenant, open_emulator
from saynad.emulator.audio import synthesize, wav_bytes
from saynad.emulator.rest import VOICES
from saynad.emulator.state import EmulatorState

JSON = {"content-type": "application/json"}
TTS = {"provider": "deepgram", "model": "aura-asteria-en"}
ACME = Tenant(id="acme", secret="acme-secret-0123456789")


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.url) as client:
        yield client


async def post(client: httpx.AsyncClient, path: str, body: bytes, **kw: Any) -> httpx.Response:
    return await client.post(path, content=body, headers=kw.pop("headers", JSON), **kw)


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/voices/"), ("GET", "/v1/voices"), ("GET", "/livekit/rooms/")],
)
async def test_unknown_path_is_404_with_empty_body(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path)
    assert response.status_code == 404
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/voices"),
        ("GET", "/speak"),
        ("DELETE", "/livekit/rooms"),
        ("POST", "/livekit/participant"),
        ("PUT", "/sip/hooks"),
        ("POST", "/recording/abc"),
        ("GET", "/sip/call"),
    ],
)
async def test_wrong_method_is_405_with_empty_body(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path)
    assert response.status_code == 405
    assert response.content == b""


async def test_health_and_voices(http: httpx.AsyncClient) -> None:
    health = await http.get("/")
    assert (health.status_code, health.content) == (200, b'{"status":"OK"}')
    assert health.headers["content-type"] == "application/json"
    voices = await http.get("/voices")
    assert voices.json() == VOICES


# --------------------------------------------------------------------------- framework rejections


async def test_missing_or_other_content_type_is_415(http: httpx.AsyncClient) -> None:
    body = b'{"text":"hi","tts_config":{"provider":"deepgram","model":""}}'
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/xml"}):
        response = await http.post("/speak", content=body, headers=headers)
        assert response.status_code == 415
        assert response.text == "Expected request with `Content-Type: application/json`"
        assert response.headers["content-type"].startswith("text/plain")
    # Parameters and +json subtypes are fine.
    ok = await post(
        http, "/speak", body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            b"",
            "Failed to parse the request body as JSON: "
            "EOF while parsing a value at line 1 column 0",
        ),
        (b"xyz", "Failed to parse the request body as JSON: expected value at line 1 column 1"),
        (b"not json", "Failed to parse the request body as JSON: "),
        (
            b'{"text":"a","tts_config":{"provider":"d","model":""}} x',
            "Failed to parse the request body as JSON: trailing characters at line 1 column 55",
        ),
        (b'{"text":', "Failed to parse the request body as JSON: EOF while parsing a value"),
    ],
)
async def test_malformed_json_is_400_plain_text(
    http: httpx.AsyncClient, body: bytes, text: str
) -> None:
    response = await post(http, "/speak", body)
    assert response.status_code == 400
    assert response.text.startswith(text)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{}", "missing field `text` at line 1 column 2"),
        (b'{"text":"hi"}', "missing field `tts_config`"),
        (b'{"text":null,"tts_config":{"provider":"d","model":""}}', "text: invalid type: null"),
        (b'{"text":5,"tts_config":{"provider":"d","model":""}}', "text: invalid type: integer"),
        (b'{"text":"hi","tts_config":{"provider":"d"}}', "tts_config: missing field `model`"),
        (
            b'{"text":"hi","tts_config":{"provider":"d","model":"","sample_rate":16000.0}}',
            "tts_config.sample_rate: invalid type: floating point",
        ),
        (
            b'{"text":"hi","tts_config":{"provider":"d","model":"","pronunciations":null}}',
            "tts_config.pronunciations: invalid type: null",
        ),
        (b"[]", "invalid type: sequence"),
    ],
)
async def test_schema_mismatch_is_422_plain_text(
    http: httpx.AsyncClient, body: bytes, text: str
) -> None:
    response = await post(http, "/speak", body)
    assert response.status_code == 422
    assert response.text.startswith(
        "Failed to deserialize the JSON body into the target type: " + text
    )


async def test_option_fields_accept_null_and_unknown_keys_are_ignored(
    http: httpx.AsyncClient,
) -> None:
    body = (
        b'{"text":"hi","extra":1,"tts_config":{"provider":"deepgram","model":"","voice_id":null,'
        b'"sample_rate":null,"audio_format":null,"auth":null,"api_key":"ignored"}}'
    )
    response = await post(http, "/speak", body)
    assert response.status_code == 200
    assert response.headers["x-sample-rate"] == "24000"
    assert response.headers["x-audio-format"] == "linear16"


async def test_body_over_2_mb_is_413(http: httpx.AsyncClient) -> None:
    body = b'{"text":"' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = await post(http, "/speak", body)
    assert response.status_code == 413


# --------------------------------------------------------------------------- speak


@pytest.mark.parametrize(
    ("audio_format", "content_type"),
    [
        (None, "audio/pcm"),
        ("linear16", "audio/pcm"),
        ("pcm", "audio/pcm"),
        ("wav", "audio/wav"),
        ("mp3", "audio/mpeg"),
        ("mpeg", "audio/mpeg"),
        ("ogg", "audio/ogg"),
        ("opus", "audio/ogg"),
        ("mulaw", "audio/basic"),
        ("ulaw", "application/octet-stream"),
    ],
)
async def test_speak_content_type_by_format(
    http: httpx.AsyncClient, audio_format: str | None, content_type: str
) -> None:
    tts: dict[str, Any] = dict(TTS, sample_rate=8000)
    if audio_format is not None:
        tts["audio_format"] = audio_format
    response = await http.post("/speak", json={"text": "abc", "tts_config": tts})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-audio-format"] == (audio_format or "linear16")
    assert response.headers["x-sample-rate"] == "8000"
    pcm = synthesize("abc", 8000, 20)
    assert response.content == (wav_bytes(pcm, 8000) if audio_format == "wav" else pcm)


async def test_speak_wav_header(http: httpx.AsyncClient) -> None:
    tts = dict(TTS, audio_format="wav", sample_rate=16000)
    response = await http.post("/speak", json={"text": "hello", "tts_config": tts})
    riff, size, wave, fmt = struct.unpack("<4sI4s4s", response.content[:16])
    assert (riff, wave, fmt) == (b"RIFF", b"WAVE", b"fmt ")
    assert size == len(response.content) - 8
    assert struct.unpack("<I", response.content[24:28]) == (16000,)


async def test_speak_pronunciations_are_plain_substring_replacements(
    http: httpx.AsyncClient,
) -> None:
    tts = dict(TTS, pronunciations=[{"word": "AP", "pronunciation": "ay pee"}])
    response = await http.post("/speak", json={"text": "APIs", "tts_config": tts})
    # "APIs" -> "ay peeIs": 8 characters of tone, not 4.
    assert len(response.content) == len(synthesize("ay peeIs", 24000, 20))


@pytest.mark.parametrize(
    ("text", "tts", "error"),
    [
        (" \n ", TTS, "Text cannot be empty"),
        ("", {"provider": "nope", "model": ""}, "Text cannot be empty"),
        ("hi", {"provider": "Nope", "model": ""}, "Unsupported provider: nope"),
        (
            "hi",
            dict(TTS, auth={"api_key": "k", "region": "x"}),
            "Invalid auth input for provider deepgram: "
            "Unsupported auth field(s) for provider deepgram: region",
        ),
        (
            "hi",
            dict(TTS, auth={"api_key": ""}),
            "Invalid auth input for provider deepgram: "
            "Auth field 'api_key' is required for provider deepgram",
        ),
        (
            "hi",
            {"provider": "azure", "model": "", "auth": {"api_key": "k"}},
            "Invalid auth input for provider azure: "
            "Auth field 'region' is required for provider azure",
        ),
        (
            "hi",
            {"provider": "elevenlabs", "model": "", "auth": {"api_key": 5}},
            "Invalid auth input for provider elevenlabs: "
            "Auth field 'api_key' must be a string for provider elevenlabs",
        ),
        (
            "hi",
            {"provider": "google", "model": "", "auth": {"credentials": 5}},
            "Invalid auth input for provider google: "
            "Auth field 'credentials' must be a string or JSON object for provider google",
        ),
    ],
)
async def test_speak_errors(
    http: httpx.AsyncClient, text: str, tts: dict[str, Any], error: str
) -> None:
    response = await http.post("/speak", json={"text": text, "tts_config": tts})
    assert response.status_code == 400
    assert response.json() == {"error": error}


async def test_speak_accepts_every_documented_auth_shape(http: httpx.AsyncClient) -> None:
    for tts in (
        dict(TTS, auth={}),
        {"provider": "google", "model": "", "auth": {"credentials": {"type": "sa"}}},
        {"provider": "google", "model": "", "auth": {"credentials": "/srv/creds.json"}},
        {"provider": "microsoft-azure", "model": "", "auth": {"api_key": "k", "region": "r"}},
        {"provider": "CARTESIA", "model": "", "auth": {"api_key": "k"}},
    ):
        response = await http.post("/speak", json={"text": "hi", "tts_config": tts})
        assert response.status_code == 200, (tts, response.text)


# --------------------------------------------------------------------------- LiveKit


async def test_livekit_not_configured_is_checked_first() -> None:
    async with (
        open_emulator(EmulatorOptions(livekit=False)) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        token = await http.post(
            "/livekit/token",
            json={"room_name": "", "participant_name": "", "participant_identity": ""},
        )
        rooms = await http.get("/livekit/rooms")
        room_blank = await http.get("/livekit/rooms/%20")
        room = await http.get("/livekit/rooms/r")
        mute_blank = await http.post(
            "/livekit/participant/mute",
            json={"room_name": "", "participant_identity": "p", "track_sid": "t", "muted": True},
        )
        mute = await http.post(
            "/livekit/participant/mute",
            json={"room_name": "r", "participant_identity": "p", "track_sid": "t", "muted": True},
        )
    assert (token.status_code, token.json()) == (500, {"error": "LiveKit service not configured"})
    assert rooms.status_code == room.status_code == 500
    # The blank-name checks come before the configuration check on these endpoints.
    assert (room_blank.status_code, room_blank.json()) == (
        400,
        {"error": "Room name cannot be empty"},
    )
    assert mute_blank.json() == {"error": "Room name cannot be empty", "code": "INVALID_REQUEST"}
    assert mute.json() == {
        "error": "LiveKit service not configured",
        "code": "LIVEKIT_NOT_CONFIGURED",
    }


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"room_name": " ", "participant_name": "", "participant_identity": ""}, "room_name"),
        (
            {"room_name": "r", "participant_name": "\t", "participant_identity": ""},
            "participant_name",
        ),
        (
            {"room_name": "r", "participant_name": "n", "participant_identity": " "},
            "participant_identity",
        ),
    ],
)
async def test_token_blank_fields(
    http: httpx.AsyncClient, body: dict[str, str], error: str
) -> None:
    response = await http.post("/livekit/token", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": f"Invalid request: {error} cannot be empty"}


async def test_token_with_tenant_creates_and_claims(http: httpx.AsyncClient) -> None:
    async with (
        open_emulator(
            EmulatorOptions(tenants=(ACME, Tenant("other", "other-secret-01234")))
        ) as emu,
        httpx.AsyncClient(
            base_url=emu.url, headers={"authorization": f"Bearer {ACME.secret}"}
        ) as acme,
    ):
        body = {"room_name": "r1", "participant_name": "n", "participant_identity": "i"}
        response = await acme.post("/livekit/token", json=body)
        assert response.status_code == 200
        assert set(response.json()) == {"token", "room_name", "participant_identity", "livekit_url"}
        assert emu.state.rooms["r1"].owner == "acme"
        assert emu.state.rooms["r1"].metadata_text() == '{"auth_id":"acme"}'
        # The room details expose the ownership metadata, as LiveKit stores it.
        details = await acme.get("/livekit/rooms/r1")
        assert details.json()["metadata"] == '{"auth_id":"acme"}'
        # ?api_key= works as well as the header.
        other = await http.post(f"{emu.url}/livekit/token?api_key=other-secret-01234", json=body)
        assert (other.status_code, other.json()) == (
            403,
            {"error": "Access denied: room belongs to a different tenant"},
        )


async def test_room_details_not_found_texts(http: httpx.AsyncClient, emulator: Emulator) -> None:
    absent = await http.get("/livekit/rooms/ghost")
    assert (absent.status_code, absent.json()) == (404, {"error": "Room 'ghost' not found"})
    emulator.state.join("a/b", "x", attributes={"k": "v"})
    found = await http.get("/livekit/rooms/a%2Fb")
    assert found.status_code == 200
    participant = found.json()["participants"][0]
    assert set(participant) == {
        "sid", "identity", "name", "state", "kind", "joined_at", "metadata", "attributes",
        "is_publisher",
    }  # fmt: skip  # fmt: skip
    assert participant["attributes"] == {"k": "v"}


async def test_participant_endpoints_validation_order(http: httpx.AsyncClient) -> None:
    blank_room = await http.request(
        "DELETE",
        "/livekit/participant",
        json={"room_name": " ", "participant_identity": " "},
    )
    blank_identity = await http.request(
        "DELETE", "/livekit/participant", json={"room_name": "r", "participant_identity": ""}
    )
    blank_track = await http.post(
        "/livekit/participant/mute",
        json={"room_name": "r", "participant_identity": "p", "track_sid": " ", "muted": False},
    )
    missing_muted = await http.post(
        "/livekit/participant/mute",
        json={"room_name": "r", "participant_identity": "p", "track_sid": "t"},
    )
    assert blank_room.json() == {"error": "Room name cannot be empty", "code": "INVALID_REQUEST"}
    assert blank_identity.json() == {
        "error": "Participant identity cannot be empty",
        "code": "INVALID_REQUEST",
    }
    assert blank_track.json() == {"error": "Track SID cannot be empty", "code": "INVALID_REQUEST"}
    assert missing_muted.status_code == 422


# --------------------------------------------------------------------------- recordings


async def test_recording_checks(http: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.state.recordings["s 1"] = b"ogg"
    for path in ("/recording/a%2Fb", "/recording/..x", "/recording/a..b"):
        response = await http.get(path)
        assert (response.status_code, response.json()) == (
            400,
            {"error": "Invalid stream_id format"},
        )
    missing = await http.get("/recording/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Recording not found: nope"})
    found = await http.get("/recording/s%201")
    assert found.content == b"ogg"
    assert found.headers["content-disposition"] == 'attachment; filename="s 1.ogg"'


async def test_recording_bad_id_is_checked_before_storage() -> None:
    async with (
        open_emulator(EmulatorOptions(recordings=False)) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        bad = await http.get("/recording/a%2Fb")
        unconfigured = await http.get("/recording/ok")
    assert bad.status_code == 400
    assert (unconfigured.status_code, unconfigured.json()) == (
        503,
        {"error": "Recording storage not configured"},
    )


# --------------------------------------------------------------------------- SIP hooks


async def test_hooks_missing_auth_id_is_422_even_without_auth(http: httpx.AsyncClient) -> None:
    response = await http.post("/sip/hooks", json={"hooks": [{"host": "h", "url": "u"}]})
    assert response.status_code == 422
    assert "missing field `auth_id`" in response.text


async def test_hooks_absent_means_empty_list(http: httpx.AsyncClient) -> None:
    response = await http.post("/sip/hooks", json={})
    assert (response.status_code, response.json()) == (200, {"hooks": []})


async def test_hooks_delete_checks(http: httpx.AsyncClient) -> None:
    for body in ({"hosts": []}, {}):
        response = await http.request("DELETE", "/sip/hooks", json=body)
        assert (response.status_code, response.json()) == (
            400,
            {"error": "No hosts provided to delete."},
        )


async def test_hooks_without_sip_configuration() -> None:
    async with (
        open_emulator(EmulatorOptions(sip=False)) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        listed = await http.get("/sip/hooks")
        added = await http.post(
            "/sip/hooks", json={"hooks": [{"host": "h", "url": "u", "auth_id": ""}]}
        )
        empty_delete = await http.request("DELETE", "/sip/hooks", json={"hosts": []})
        deleted = await http.request("DELETE", "/sip/hooks", json={"hosts": ["h"]})
    no_cache = {"error": "No cache path configured. Cannot persist SIP hooks."}
    assert (listed.status_code, listed.json()) == (200, {"hooks": []})
    assert (added.status_code, added.json()) == (500, no_cache)
    assert empty_delete.status_code == 400  # checked before the cache path
    assert (deleted.status_code, deleted.json()) == (500, no_cache)


async def test_hooks_auth_id_required_with_auth() -> None:
    async with (
        open_emulator(EmulatorOptions(tenants=(ACME,))) as emulator,
        httpx.AsyncClient(
            base_url=emulator.url, headers={"authorization": f"Bearer {ACME.secret}"}
        ) as http,
    ):
        emulator.state.add_config_hook("fixed.example", "https://cfg", "acme")
        blank = await http.post(
            "/sip/hooks",
            json={"hooks": [{"host": "Fixed.Example", "url": "u", "auth_id": "  "}]},
        )
        fixed = await http.post(
            "/sip/hooks",
            json={
                "hooks": [
                    {"host": "z.example", "url": "u", "auth_id": "acme"},
                    {"host": "Fixed.Example", "url": "u", "auth_id": "acme"},
                ]
            },
        )
    assert (blank.status_code, blank.json()) == (
        400,
        {
            "error": "Hook for host 'Fixed.Example' has empty auth_id. "
            "When AUTH_REQUIRED=true, auth_id must be provided."
        },
    )
    assert (fixed.status_code, fixed.json()) == (
        405,
        {
            "error": "Host(s) fixed.example are hardcoded in the application config "
            "and cannot be changed."
        },
    )


async def test_hooks_hardcoded_hosts_are_listed_sorted(emulator: Emulator) -> None:
    emulator.state.add_config_hook("b.example", "https://b")
    emulator.state.add_config_hook("a.example", "https://a")
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        response = await http.request(
            "DELETE", "/sip/hooks", json={"hosts": ["B.example", "a.example", "c.example"]}
        )
    assert response.status_code == 405
    assert response.json()["error"].startswith("Host(s) a.example, b.example are hardcoded")


# --------------------------------------------------------------------------- SIP transfer and call


async def test_transfer_check_order(http: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.state.join("r", "web")

    async def transfer(room: str, identity: str, to: str) -> tuple[int, Any]:
        response = await http.post(
            "/sip/transfer",
            json={"room_name": room, "participant_identity": identity, "transfer_to": to},
        )
        return response.status_code, response.json()

    # The phone number is validated before everything else.
    assert await transfer(" ", " ", "+1 555") == (
        400,
        {
            "error": "Invalid phone number: Invalid character ' ' at position 2 - only digits "
            "(0-9) and optional leading '+' are allowed",
            "code": "INVALID_PHONE_NUMBER",
        },
    )
    assert await transfer(" ", " ", "+1555") == (
        400,
        {"error": "Room name cannot be empty", "code": "INVALID_PHONE_NUMBER"},
    )
    assert await transfer("r", " ", "+1555") == (
        400,
        {"error": "Participant identity cannot be empty", "code": "PARTICIPANT_NOT_FOUND"},
    )
    assert await transfer("r", "web", "+1555") == (
        404,
        {
            "error": "Participant 'web' not found or is not a SIP participant",
            "code": "PARTICIPANT_NOT_FOUND",
        },
    )
    assert not emulator.state.transfers


async def test_transfer_without_livekit() -> None:
    async with (
        open_emulator(EmulatorOptions(livekit=False)) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        response = await http.post(
            "/sip/transfer",
            json={"room_name": "r", "participant_identity": "p", "transfer_to": "+1"},
        )
    assert (response.status_code, response.json()) == (
        500,
        {"error": "LiveKit SIP service not configured", "code": "LIVEKIT_NOT_CONFIGURED"},
    )


CALL = {
    "room_name": "r",
    "participant_name": "n",
    "participant_identity": "i",
    "from_phone_number": "+1510",
    "to_phone_number": "+1555",
}


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"room_name": " ", "participant_name": " "}, "Room name cannot be empty"),
        ({"participant_name": " ", "participant_identity": ""}, "Participant name cannot be empty"),
        (
            {"participant_identity": "", "to_phone_number": "x"},
            "Participant identity cannot be empty",
        ),
        (
            {"to_phone_number": "", "from_phone_number": "x"},
            "Invalid to_phone_number: Phone number cannot be empty",
        ),
        (
            {"from_phone_number": "+"},
            "Invalid from_phone_number: Phone number must contain at least one digit",
        ),
    ],
)
async def test_call_validation_order(
    http: httpx.AsyncClient, override: dict[str, str], error: str
) -> None:
    response = await http.post("/sip/call", json=CALL | override)
    assert (response.status_code, response.json()) == (
        400,
        {"error": error, "code": "INVALID_PHONE_NUMBER"},
    )


async def test_call_outbound_address() -> None:
    async with (
        open_emulator(EmulatorOptions(sip=False)) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        unconfigured = await http.post("/sip/call", json=CALL | {"sip": None})
        overridden = await http.post(
            "/sip/call", json=CALL | {"sip": {"outbound_address": "pbx.example", "x": 1}}
        )
    assert (unconfigured.status_code, unconfigured.json()) == (
        500,
        {"error": "Outbound address not configured", "code": "OUTBOUND_ADDRESS_NOT_CONFIGURED"},
    )
    assert overridden.status_code == 200
    assert overridden.json()["status"] == "initiated"
    assert emulator.state.calls[0]["outbound_address"] == "pbx.example"


async def test_the_dialled_calls_kept_are_bounded_the_oldest_dropped() -> None:
    # A demo emulator (make run) dials for weeks: it keeps the last calls, not all.
    async with (
        open_emulator(state=EmulatorState(wire_log_size=3)) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        for n in range(5):
            room = {"room_name": f"out-{n}", "participant_identity": f"callee-{n}"}
            response = await http.post("/sip/call", json=CALL | room)
            assert response.status_code == 200
    assert [call["room_name"] for call in emulator.state.calls] == ["out-2", "out-3", "out-4"]


async def test_call_adds_a_sip_participant_and_notifies_the_room(emulator: Emulator) -> None:
    events: list[str] = []
    room = emulator.state.create_room("r")
    room.listeners.append(lambda event: events.append(f"{event.kind}:{event.participant.identity}"))
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        response = await http.post("/sip/call", json=CALL)
    assert response.status_code == 200
    participant = emulator.state.rooms["r"].participants["i"]
    assert participant.kind == "SIP"
    assert participant.attributes == {
        "sip.phoneNumber": "+1555",
        "sip.trunkPhoneNumber": "+1510",
    }
    assert response.json()["participant_id"] == participant.sid
    assert events == ["participant_connected:i"]


# --------------------------------------------------------------------------- other routes


async def test_auth_runs_before_routing() -> None:
    async with (
        open_emulator(EmulatorOptions(tenants=(ACME,))) as emulator,
        httpx.AsyncClient(base_url=emulator.url) as http,
    ):
        unknown = await http.get("/nope")
        health = await http.get("/")
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "missing_auth_header"
    assert health.status_code == 200


async def test_plain_get_on_ws_is_not_an_upgrade(http: httpx.AsyncClient) -> None:
    response = await http.get("/ws")
    assert response.status_code == 400
