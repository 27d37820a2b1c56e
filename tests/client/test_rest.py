"""RestClient: every method end to end against the emulator, and the wire details
(request bytes, error mapping, retries, timeouts) against an httpx.MockTransport."""

from __future__ import annotations

import email.utils
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing

from saynad.client import RestClient
from saynad.emulator import Emulator, EmulatorOptions, Tenant, open_emulator
from saynad.emulator.audio import synthesize
from saynad.errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    HTTPStatusError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServerError,
    TransportError,
    ValidationError,
)
from saynad.protocol.messages import ApiKeyAuth, Pronunciation, TTSConfig
from saynad.protocol.rest import (
    HealthResponse,
    LiveKitRoomDetails,
    SipCallSipConfig,
    SipHook,
    SipHooksResponse,
)

DEEPGRAM = TTSConfig(provider="deepgram", model="aura-asteria-en")
ACME = Tenant(id="acme", secret="acme-secret-0123456789")
GLOBEX = Tenant(id="globex", secret="globex-secret-0123456789")

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


@pytest.fixture(autouse=True)
def _no_ambient_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's SAYNA_API_KEY must not change what these tests send."""
    monkeypatch.delenv("SAYNA_API_KEY", raising=False)


class Recorder:
    """A MockTransport handler answering from a script and keeping every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def mock_client(handler: Handler, **kwargs: Any) -> RestClient:
    kwargs.setdefault("api_key", "test-key")
    return RestClient("http://sayna.test", transport=httpx.MockTransport(handler), **kwargs)


def ok(body: bytes, **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "application/json"}, **kwargs)


def error(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


HOOKS_OK = b'{"hooks":[]}'


# =========================================================================== end to end


async def test_health_and_voices(emulator: Emulator) -> None:
    async with RestClient(emulator.url) as rest:
        assert await rest.health() == HealthResponse(status="OK")
        voices = await rest.get_voices()
    assert set(voices) == {"deepgram", "elevenlabs"}
    assert voices["deepgram"][0].id == "aura-asteria-en"
    assert all(v.name for vs in voices.values() for v in vs)


async def test_websocket_url_is_accepted(emulator: Emulator) -> None:
    async with RestClient(emulator.ws_url) as rest:
        assert rest.base_url == emulator.url
        assert (await rest.health()).status == "OK"


async def test_speak_returns_the_audio_and_headers(emulator: Emulator) -> None:
    tts = TTSConfig(provider="deepgram", model="aura-asteria-en", sample_rate=16000)
    async with RestClient(emulator.url) as rest:
        audio, headers = await rest.speak("Hello world", tts)
    per_char = emulator.options.tts_ms_per_char
    assert audio == synthesize("Hello world", 16000, per_char)
    assert len(audio) == 2 * 16000 * len("Hello world") * per_char // 1000
    assert headers["content-type"] == "audio/pcm"
    assert headers["x-audio-format"] == "linear16"
    assert headers["x-sample-rate"] == "16000"
    assert headers["content-length"] == str(len(audio))


async def test_speak_applies_pronunciations_and_format(emulator: Emulator) -> None:
    tts = TTSConfig(
        provider="elevenlabs",
        model="",
        voice_id="21m00Tcm4TlvDq8ikWAM",
        audio_format="wav",
        pronunciations=(Pronunciation("API", "A P I"),),
        auth=ApiKeyAuth("el-key"),
    )
    async with RestClient(emulator.url) as rest:
        audio, headers = await rest.speak("API", tts)
    assert headers["content-type"] == "audio/wav"
    assert headers["x-sample-rate"] == "24000"
    assert audio[:4] == b"RIFF"
    assert audio[44:] == synthesize("A P I", 24000, emulator.options.tts_ms_per_char)


async def test_speak_errors_come_from_the_server(emulator: Emulator) -> None:
    async with RestClient(emulator.url) as rest:
        with pytest.raises(BadRequestError) as empty:
            await rest.speak("   ", DEEPGRAM)
        with pytest.raises(BadRequestError) as provider:
            await rest.speak("hi", TTSConfig(provider="acme-tts", model=""))
    assert empty.value.status_code == 400
    assert empty.value.error == "Text cannot be empty"
    assert provider.value.error == "Unsupported provider: acme-tts"


async def test_livekit_token_rooms_and_room_details(emulator: Emulator) -> None:
    async with RestClient(emulator.url) as rest:
        token = await rest.get_livekit_token("room-1", "Alice", "alice-1")
        assert token.room_name == "room-1"
        assert token.participant_identity == "alice-1"
        assert token.livekit_url == emulator.options.livekit_url
        assert token.token.count(".") == 2
        # Without a tenant the server only mints the token; it creates no room.
        assert (await rest.get_livekit_rooms()).rooms == ()

        emulator.state.join("room-1", "caller", name="Caller", kind="SIP", tracks=("TR_a",))
        emulator.state.join("room-1", "agent", kind="AGENT")
        rooms = await rest.get_livekit_rooms()
        assert [(r.name, r.num_participants) for r in rooms.rooms] == [("room-1", 2)]

        room = await rest.get_livekit_room("room-1")
    assert isinstance(room, LiveKitRoomDetails)
    assert room.name == "room-1"
    assert room.sid == emulator.state.rooms["room-1"].sid
    assert room.num_participants == 2
    assert [(p.identity, p.kind, p.state) for p in room.participants] == [
        ("caller", "SIP", "ACTIVE"),
        ("agent", "AGENT", "ACTIVE"),
    ]
    assert room.participants[0].name == "Caller"
    assert emulator.state.tokens[0]["participant_identity"] == "alice-1"


async def test_room_names_are_percent_encoded_not_rewritten(emulator: Emulator) -> None:
    name = "support/line 1"
    emulator.state.join(name, "caller")
    emulator.state.join(" padded ", "someone")
    async with RestClient(emulator.url) as rest:
        room = await rest.get_livekit_room(name)
        padded = await rest.get_livekit_room(" padded ")
        with pytest.raises(NotFoundError) as absent:
            await rest.get_livekit_room("support")
    assert room.name == name
    assert room.participants[0].identity == "caller"
    assert padded.name == " padded "
    assert absent.value.error == "Room 'support' not found"
    assert absent.value.endpoint == "/livekit/rooms/support"


async def test_remove_participant(emulator: Emulator) -> None:
    emulator.state.join("room-1", "alice")
    async with RestClient(emulator.url) as rest:
        removed = await rest.remove_livekit_participant("room-1", "alice")
        assert (removed.status, removed.room_name, removed.participant_identity) == (
            "removed",
            "room-1",
            "alice",
        )
        assert "alice" not in emulator.state.rooms["room-1"].participants
        with pytest.raises(NotFoundError) as again:
            await rest.remove_livekit_participant("room-1", "alice")
        with pytest.raises(NotFoundError) as no_room:
            await rest.remove_livekit_participant("nowhere", "alice")
    assert again.value.code == "PARTICIPANT_NOT_FOUND"
    assert again.value.error == "Participant 'alice' not found in room 'room-1'"
    assert again.value.method == "DELETE"
    assert no_room.value.error == "Room 'nowhere' not found or not accessible"


async def test_mute_participant_track(emulator: Emulator) -> None:
    emulator.state.join("room-1", "alice", tracks=("TR_mic",))
    async with RestClient(emulator.url) as rest:
        muted = await rest.mute_livekit_participant_track("room-1", "alice", "TR_mic", True)
        assert muted.muted is True
        assert emulator.state.rooms["room-1"].participants["alice"].tracks["TR_mic"] is True
        unmuted = await rest.mute_livekit_participant_track("room-1", "alice", "TR_mic", False)
        assert unmuted.muted is False
        with pytest.raises(NotFoundError) as missing:
            await rest.mute_livekit_participant_track("room-1", "alice", "TR_cam", True)
    assert missing.value.code == "PARTICIPANT_NOT_FOUND"
    assert missing.value.error == (
        "Track 'TR_cam' or participant 'alice' not found in room 'room-1'"
    )


async def test_sip_hooks_lifecycle(emulator: Emulator) -> None:
    async with RestClient(emulator.url) as rest:
        assert await rest.get_sip_hooks() == SipHooksResponse(hooks=())
        merged = await rest.set_sip_hooks(
            [
                SipHook(" Example.COM ", "https://hooks.example/a", " tenant-1 "),
                SipHook("other.org", "https://hooks.example/b", ""),
            ]
        )
        assert merged.hooks == (
            SipHook("example.com", "https://hooks.example/a", "tenant-1"),
            SipHook("other.org", "https://hooks.example/b", ""),
        )
        # Same host, other case: replaced, not duplicated.
        replaced = await rest.set_sip_hooks([SipHook("EXAMPLE.com", "https://new", "t2")])
        assert replaced.hooks[0] == SipHook("example.com", "https://new", "t2")
        assert len(replaced.hooks) == 2
        assert (await rest.get_sip_hooks()).hooks == replaced.hooks

        with pytest.raises(BadRequestError) as duplicate:
            await rest.set_sip_hooks([SipHook("a.com", "u", ""), SipHook("A.com ", "u", "")])

        remaining = await rest.delete_sip_hooks(["EXAMPLE.COM", "unknown.net"])
        assert remaining.hooks == (SipHook("other.org", "https://hooks.example/b", ""),)
    assert duplicate.value.status_code == 400
    assert duplicate.value.error == "Duplicate host detected: a.com"


async def test_sip_hooks_fixed_hosts_are_refused_with_405() -> None:
    async with open_emulator(EmulatorOptions()) as emulator:
        emulator.state.add_config_hook("fixed.example", "https://cfg")
        async with RestClient(emulator.url) as rest:
            with pytest.raises(BadRequestError) as change:
                await rest.set_sip_hooks([SipHook("FIXED.example", "https://mine", "")])
            with pytest.raises(BadRequestError) as delete:
                await rest.delete_sip_hooks(["fixed.example", "b.example", "a.example"])
            assert (await rest.get_sip_hooks()).hooks == (
                SipHook("fixed.example", "https://cfg", ""),
            )
    assert change.value.status_code == 405
    assert change.value.error == (
        "Host(s) fixed.example are hardcoded in the application config and cannot be changed."
    )
    assert delete.value.status_code == 405


async def test_sip_transfer(emulator: Emulator) -> None:
    emulator.state.join("call-1", "sip-caller", kind="SIP")
    emulator.state.join("call-1", "web-user")
    async with RestClient(emulator.url) as rest:
        result = await rest.sip_transfer("call-1", "sip-caller", " +15551234567 ")
        with pytest.raises(NotFoundError) as not_sip:
            await rest.sip_transfer("call-1", "web-user", "+15551234567")
    assert result.status == "completed"
    assert result.transfer_to == "tel:+15551234567"
    assert (result.room_name, result.participant_identity) == ("call-1", "sip-caller")
    assert list(emulator.state.transfers) == [
        {
            "room_name": "call-1",
            "participant_identity": "sip-caller",
            "transfer_to": "tel:+15551234567",
        }
    ]
    assert not_sip.value.code == "PARTICIPANT_NOT_FOUND"
    assert not_sip.value.error == "Participant 'web-user' not found or is not a SIP participant"


async def test_sip_call(emulator: Emulator) -> None:
    async with RestClient(emulator.url) as rest:
        call = await rest.sip_call(
            "out-1",
            "John Doe",
            "callee-1",
            "+15105550123",
            "+15551234567",
            sip=SipCallSipConfig(outbound_address="sip.provider.example:5060"),
        )
        room = await rest.get_livekit_room("out-1")
    assert call.status == "initiated"
    assert (call.room_name, call.participant_identity) == ("out-1", "callee-1")
    assert call.participant_id == room.participants[0].sid
    assert call.sip_call_id.startswith("SC_")
    assert (room.participants[0].kind, room.participants[0].name) == ("SIP", "John Doe")
    (recorded,) = emulator.state.calls
    assert recorded["outbound_address"] == "sip.provider.example:5060"
    assert recorded["to_phone_number"] == "+15551234567"


async def test_get_recording(emulator: Emulator) -> None:
    emulator.state.recordings["stream-1"] = b"OggS\x00fake-ogg"
    async with RestClient(emulator.url) as rest:
        audio, headers = await rest.get_recording("stream-1")
        with pytest.raises(NotFoundError) as missing:
            await rest.get_recording("stream-2")
    assert audio == b"OggS\x00fake-ogg"
    assert headers["content-type"] == "audio/ogg"
    assert headers["content-disposition"] == 'attachment; filename="stream-1.ogg"'
    assert missing.value.error == "Recording not found: stream-2"


async def test_recording_storage_not_configured_is_503() -> None:
    async with (
        open_emulator(EmulatorOptions(recordings=False)) as emulator,
        RestClient(emulator.url, max_retries=0) as rest,
    ):
        with pytest.raises(ServerError) as exc:
            await rest.get_recording("stream-1")
    assert exc.value.status_code == 503
    assert exc.value.error == "Recording storage not configured"


async def test_livekit_not_configured_is_500() -> None:
    async with (
        open_emulator(EmulatorOptions(livekit=False)) as emulator,
        RestClient(emulator.url) as rest,
    ):
        with pytest.raises(ServerError) as token:
            await rest.get_livekit_token("r", "n", "i")
        with pytest.raises(ServerError) as kick:
            await rest.remove_livekit_participant("r", "i")
    assert token.value.error == "LiveKit service not configured"
    assert kick.value.code == "LIVEKIT_NOT_CONFIGURED"


# =========================================================================== auth and tenants


async def test_authentication_failures_carry_the_server_codes() -> None:
    async with open_emulator(EmulatorOptions(tenants=(ACME,))) as emulator:
        async with RestClient(emulator.url) as anonymous:
            assert (await anonymous.health()).status == "OK"  # public
            with pytest.raises(AuthenticationError) as missing:
                await anonymous.get_voices()
        async with RestClient(emulator.url, api_key="wrong") as wrong:
            with pytest.raises(AuthenticationError) as unauthorized:
                await wrong.get_livekit_rooms()
        async with RestClient(emulator.url, headers={"Authorization": "Token x"}) as garbled:
            with pytest.raises(AuthenticationError) as invalid:
                await garbled.get_sip_hooks()
        async with RestClient(emulator.url, api_key=ACME.secret) as good:
            assert "deepgram" in await good.get_voices()
    assert missing.value.status_code == 401
    assert missing.value.error == "missing_auth_header"
    assert missing.value.detail == (
        "Missing authentication token (Authorization header or api_key query parameter)"
    )
    assert unauthorized.value.error == "unauthorized"
    assert unauthorized.value.detail == "Unauthorized: Invalid API secret"
    assert invalid.value.error == "invalid_auth_header"


async def test_api_key_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAYNA_API_KEY", ACME.secret)
    async with (
        open_emulator(EmulatorOptions(tenants=(ACME,))) as emulator,
        RestClient(emulator.url) as rest,
    ):
        assert "deepgram" in await rest.get_voices()


async def test_tenant_isolation() -> None:
    options = EmulatorOptions(tenants=(ACME, GLOBEX))
    async with (
        open_emulator(options) as emulator,
        RestClient(emulator.url, api_key=ACME.secret) as acme,
        RestClient(emulator.url, api_key=GLOBEX.secret) as globex,
    ):
        # With a tenant, a token creates and claims the room.
        await acme.get_livekit_token("acme/room 1", "Agent", "agent-1")
        assert emulator.state.rooms["acme/room 1"].owner == "acme"
        emulator.state.join("acme/room 1", "caller", kind="SIP", tracks=("TR_1",))

        assert [r.name for r in (await acme.get_livekit_rooms()).rooms] == ["acme/room 1"]
        assert (await globex.get_livekit_rooms()).rooms == ()
        assert (await acme.get_livekit_room("acme/room 1")).participants[0].identity == "caller"

        with pytest.raises(AccessDeniedError) as token:
            await globex.get_livekit_token("acme/room 1", "Intruder", "x")
        with pytest.raises(NotFoundError) as details:
            await globex.get_livekit_room("acme/room 1")
        with pytest.raises(NotFoundError) as kick:
            await globex.remove_livekit_participant("acme/room 1", "caller")
        with pytest.raises(NotFoundError) as mute:
            await globex.mute_livekit_participant_track("acme/room 1", "caller", "TR_1", True)
        with pytest.raises(NotFoundError) as transfer:
            await globex.sip_transfer("acme/room 1", "caller", "+15551234567")
        with pytest.raises(NotFoundError) as call:
            await globex.sip_call("acme/room 1", "n", "i", "+1510", "+1555")

        # An unowned room is claimed by a token but never by a call.
        emulator.state.create_room("free")
        with pytest.raises(NotFoundError) as unowned_call:
            await globex.sip_call("free", "n", "i", "+1510", "+1555")
        await globex.get_livekit_token("free", "n", "i")
        assert emulator.state.rooms["free"].owner == "globex"
        # A call into an absent room creates it for the caller's tenant.
        await globex.sip_call("globex-new", "n", "i", "+1510", "+1555")
        assert emulator.state.rooms["globex-new"].owner == "globex"

        # Nothing of acme's was touched.
        participant = emulator.state.rooms["acme/room 1"].participants["caller"]
        assert participant.tracks == {"TR_1": False}
        assert not emulator.state.transfers

    assert token.value.status_code == 403
    assert token.value.error == "Access denied: room belongs to a different tenant"
    assert details.value.error == "Room 'acme/room 1' not found or not accessible"
    assert kick.value.code == mute.value.code == "PARTICIPANT_NOT_FOUND"
    assert transfer.value.code == call.value.code == "ROOM_ACCESS_DENIED"
    assert transfer.value.error == "Room not found or not accessible"
    assert unowned_call.value.code == "ROOM_ACCESS_DENIED"


# =========================================================================== transport errors


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_a_transport_error() -> None:
    async with RestClient(f"http://127.0.0.1:{_unused_port()}", max_retries=0) as rest:
        with pytest.raises(TransportError) as exc:
            await rest.health()
    assert isinstance(exc.value.__cause__, httpx.ConnectError)


# =========================================================================== exact request bytes

ROOM = b'{"sid":"RM_1","name":"a/b c","num_participants":0,"max_participants":0,"creation_time":1,"metadata":"","active_recording":false,"participants":[]}'  # noqa: E501

CallSpec = tuple[Callable[[RestClient], Awaitable[Any]], str, bytes, bytes | None, bytes]

WIRE_CASES: dict[str, CallSpec] = {
    "health": (lambda r: r.health(), "GET", b"/", None, b'{"status":"OK"}'),
    "voices": (lambda r: r.get_voices(), "GET", b"/voices", None, b"{}"),
    "speak": (
        lambda r: r.speak("Hi", TTSConfig(provider="deepgram", model="", sample_rate=16000)),
        "POST",
        b"/speak",
        b'{"text":"Hi","tts_config":{"provider":"deepgram","model":"","sample_rate":16000}}',
        b"",
    ),
    "token": (
        lambda r: r.get_livekit_token("a/b c", "Alice", "alice-1"),
        "POST",
        b"/livekit/token",
        b'{"room_name":"a/b c","participant_name":"Alice","participant_identity":"alice-1"}',
        b'{"token":"t","room_name":"a/b c","participant_identity":"alice-1","livekit_url":"u"}',
    ),
    "rooms": (lambda r: r.get_livekit_rooms(), "GET", b"/livekit/rooms", None, b'{"rooms":[]}'),
    "room": (
        lambda r: r.get_livekit_room("a/b c"),
        "GET",
        b"/livekit/rooms/a%2Fb%20c",
        None,
        ROOM,
    ),
    "remove": (
        lambda r: r.remove_livekit_participant("a/b c", "alice-1"),
        "DELETE",
        b"/livekit/participant",
        b'{"room_name":"a/b c","participant_identity":"alice-1"}',
        b'{"status":"removed","room_name":"a/b c","participant_identity":"alice-1"}',
    ),
    "mute": (
        lambda r: r.mute_livekit_participant_track("a/b c", "alice-1", "TR_1", False),
        "POST",
        b"/livekit/participant/mute",
        b'{"room_name":"a/b c","participant_identity":"alice-1","track_sid":"TR_1","muted":false}',
        b'{"room_name":"a/b c","participant_identity":"alice-1","track_sid":"TR_1","muted":false}',
    ),
    "get_hooks": (lambda r: r.get_sip_hooks(), "GET", b"/sip/hooks", None, HOOKS_OK),
    "set_hooks": (
        lambda r: r.set_sip_hooks([SipHook("example.com", "https://h/x", "t-1")]),
        "POST",
        b"/sip/hooks",
        b'{"hooks":[{"host":"example.com","url":"https://h/x","auth_id":"t-1"}]}',
        HOOKS_OK,
    ),
    "delete_hooks": (
        lambda r: r.delete_sip_hooks(["example.com", "Other.org"]),
        "DELETE",
        b"/sip/hooks",
        b'{"hosts":["example.com","Other.org"]}',
        HOOKS_OK,
    ),
    "transfer": (
        lambda r: r.sip_transfer("a/b c", "sip-1", "+15551234567"),
        "POST",
        b"/sip/transfer",
        b'{"room_name":"a/b c","participant_identity":"sip-1","transfer_to":"+15551234567"}',
        b'{"status":"initiated","room_name":"a/b c","participant_identity":"sip-1",'
        b'"transfer_to":"tel:+15551234567"}',
    ),
    "call": (
        lambda r: r.sip_call("a/b c", "John", "c-1", "+15105550123", "+15551234567"),
        "POST",
        b"/sip/call",
        b'{"room_name":"a/b c","participant_name":"John","participant_identity":"c-1",'
        b'"from_phone_number":"+15105550123","to_phone_number":"+15551234567"}',
        b'{"status":"initiated","room_name":"a/b c","participant_identity":"c-1",'
        b'"participant_id":"PA_1","sip_call_id":"SC_1"}',
    ),
    "call_with_sip": (
        lambda r: r.sip_call(
            "r", "John", "c-1", "+1510", "+1555", sip=SipCallSipConfig(auth_username="u")
        ),
        "POST",
        b"/sip/call",
        b'{"room_name":"r","participant_name":"John","participant_identity":"c-1",'
        b'"from_phone_number":"+1510","to_phone_number":"+1555","sip":{"auth_username":"u"}}',
        b'{"status":"initiated","room_name":"r","participant_identity":"c-1",'
        b'"participant_id":"PA_1","sip_call_id":"SC_1"}',
    ),
    "recording": (
        lambda r: r.get_recording("550e8400-e29b-41d4-a716-446655440000"),
        "GET",
        b"/recording/550e8400-e29b-41d4-a716-446655440000",
        None,
        b"OggS",
    ),
}


@pytest.mark.parametrize("case", sorted(WIRE_CASES))
async def test_exact_requests_on_the_wire(case: str) -> None:
    call, method, raw_path, body, answer = WIRE_CASES[case]
    recorder = Recorder(ok(answer))
    async with mock_client(recorder, api_key="k-123") as rest:
        await call(rest)
    (request,) = recorder.requests
    assert request.method == method
    assert request.url.raw_path == raw_path
    assert request.url.host == "sayna.test"
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["user-agent"].startswith("saynad/")
    if body is None:
        assert request.content == b""
        assert "content-type" not in request.headers
    else:
        assert request.content == body
        assert request.headers["content-type"] == "application/json"


async def test_no_authorization_header_without_a_key() -> None:
    recorder = Recorder(ok(b'{"status":"OK"}'))
    async with mock_client(recorder, api_key=None) as rest:
        await rest.health()
    assert "authorization" not in recorder.requests[0].headers


async def test_websocket_url_maps_to_the_rest_base() -> None:
    recorder = Recorder(ok(b"{}"))
    transport = httpx.MockTransport(recorder)
    async with RestClient("wss://sayna.test:8443/ws", transport=transport) as rest:
        await rest.get_voices()
    assert str(recorder.requests[0].url) == "https://sayna.test:8443/voices"


def test_invalid_url_is_refused() -> None:
    with pytest.raises(ValidationError):
        RestClient("ftp://sayna.test")


# =========================================================================== pre-checks

PRECHECKS: dict[str, tuple[Callable[[RestClient], Awaitable[Any]], str]] = {
    "token_room": (lambda r: r.get_livekit_token(" ", "n", "i"), "room_name"),
    "token_name": (lambda r: r.get_livekit_token("r", "", "i"), "participant_name"),
    "token_identity": (lambda r: r.get_livekit_token("r", "n", "\t"), "participant_identity"),
    "room": (lambda r: r.get_livekit_room("  "), "room_name"),
    "remove_room": (lambda r: r.remove_livekit_participant("", "p"), "room_name"),
    "remove_identity": (lambda r: r.remove_livekit_participant("r", " "), "participant_identity"),
    "mute_room": (lambda r: r.mute_livekit_participant_track("", "p", "t", True), "room_name"),
    "mute_identity": (
        lambda r: r.mute_livekit_participant_track("r", "", "t", True),
        "participant_identity",
    ),
    "mute_track": (lambda r: r.mute_livekit_participant_track("r", "p", " ", True), "track_sid"),
    "mute_not_bool": (
        lambda r: r.mute_livekit_participant_track("r", "p", "t", 1),  # type: ignore[arg-type]
        "muted must be a boolean",
    ),
    "delete_none": (lambda r: r.delete_sip_hooks([]), "at least one host"),
    "delete_str": (lambda r: r.delete_sip_hooks("example.com"), "not a single string"),
    "set_hooks_single": (
        lambda r: r.set_sip_hooks(SipHook("h", "u", "a")),  # type: ignore[arg-type]
        "not a single SipHook",
    ),
    "transfer_room": (lambda r: r.sip_transfer(" ", "p", "+1"), "room_name"),
    "transfer_identity": (lambda r: r.sip_transfer("r", "", "+1"), "participant_identity"),
    "transfer_blank": (lambda r: r.sip_transfer("r", "p", "  "), "transfer_to"),
    "transfer_bad_phone": (
        lambda r: r.sip_transfer("r", "p", "+1-555"),
        "Invalid phone number: Invalid character '-' at position 2",
    ),
    "call_room": (lambda r: r.sip_call("", "n", "i", "+1", "+2"), "room_name"),
    "call_name": (lambda r: r.sip_call("r", " ", "i", "+1", "+2"), "participant_name"),
    "call_identity": (lambda r: r.sip_call("r", "n", "", "+1", "+2"), "participant_identity"),
    "call_from_blank": (lambda r: r.sip_call("r", "n", "i", " ", "+2"), "from_phone_number"),
    "call_to_blank": (lambda r: r.sip_call("r", "n", "i", "+1", ""), "to_phone_number"),
    "call_to_bad": (
        lambda r: r.sip_call("r", "n", "i", "x", "+"),
        "Invalid to_phone_number: Phone number must contain at least one digit",
    ),
    "call_from_bad": (
        lambda r: r.sip_call("r", "n", "i", "++1", "+2"),
        "Invalid from_phone_number: Invalid character '+' at position 1",
    ),
    "recording_blank": (lambda r: r.get_recording(" "), "stream_id"),
    "recording_slash": (lambda r: r.get_recording("a/b"), "'/' or '..'"),
    "recording_dots": (lambda r: r.get_recording(".."), "'/' or '..'"),
    "recording_dots_inside": (lambda r: r.get_recording("a..b"), "'/' or '..'"),
}


@pytest.mark.parametrize("case", sorted(PRECHECKS))
async def test_prechecks_raise_before_any_request(case: str) -> None:
    call, fragment = PRECHECKS[case]
    recorder = Recorder(ok(b"{}"))
    async with mock_client(recorder) as rest:
        with pytest.raises(ValidationError, match=re.escape(fragment)):
            await call(rest)
    assert recorder.requests == []


# =========================================================================== status mapping

STATUS_CLASSES: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AccessDeniedError,
    404: NotFoundError,
    405: BadRequestError,
    408: BadRequestError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}


@pytest.mark.parametrize("retry_after", [None, "7"])
@pytest.mark.parametrize("status", sorted(STATUS_CLASSES))
async def test_status_maps_to_its_exception(status: int, retry_after: str | None) -> None:
    body = b'{"error":"boom","code":"SOME_CODE","message":"more"}'
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    recorder = Recorder(error(status, body, headers))
    async with mock_client(recorder) as rest:
        with pytest.raises(HTTPStatusError) as exc:
            await rest.get_livekit_token("r", "n", "i")
    assert type(exc.value) is STATUS_CLASSES[status]
    assert exc.value.status_code == status
    assert exc.value.method == "POST"
    assert exc.value.endpoint == "/livekit/token"
    assert (exc.value.error, exc.value.code, exc.value.detail) == ("boom", "SOME_CODE", "more")
    assert exc.value.body == body.decode()
    assert exc.value.retry_after_s == (7.0 if retry_after else None)
    assert f"-> {status}: boom" in str(exc.value)
    assert len(recorder.requests) == 1  # a POST is never retried


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (415, b"Expected request with `Content-Type: application/json`"),
        (
            422,
            b"Failed to deserialize the JSON body into the target type: missing field `text` "
            b"at line 1 column 2",
        ),
        (400, b"Failed to parse the request body as JSON: expected value at line 1 column 1"),
        (413, b"Failed to buffer the request body: length limit exceeded"),
        (500, b'{"error":"Failed to synth'),  # truncated JSON
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        (503, b""),
        (500, b"\xff\xfe\x00binary"),
    ],
)
async def test_non_json_error_bodies_keep_the_raw_text(status: int, body: bytes) -> None:
    recorder = Recorder(error(status, body, {"content-type": "text/plain; charset=utf-8"}))
    async with mock_client(recorder) as rest:
        with pytest.raises(HTTPStatusError) as exc:
            await rest.speak("hi", DEEPGRAM)
    assert exc.value.status_code == status
    assert exc.value.error is None
    assert exc.value.code is None
    assert exc.value.body == body.decode("utf-8", errors="replace")
    if body.strip():
        assert body.decode("utf-8", errors="replace").strip()[:40] in str(exc.value)
    else:
        assert f"HTTP {status}" in str(exc.value)


async def test_success_body_not_matching_the_schema_is_a_decode_error() -> None:
    recorder = Recorder(ok(b'{"rooms":[{"name":"a"}]}'))
    async with mock_client(recorder) as rest:
        with pytest.raises(ResponseDecodeError) as exc:
            await rest.get_livekit_rooms()
    assert isinstance(exc.value, ClientError)
    assert isinstance(exc.value.__cause__, msgspec.ValidationError)
    assert exc.value.endpoint == "/livekit/rooms"
    assert exc.value.status_code == 200
    assert "num_participants" in exc.value.detail
    assert len(recorder.requests) == 1  # not retried


@pytest.mark.parametrize("body", [b'{"status":"O', b"OK", b"", b"<html></html>"])
async def test_truncated_or_non_json_success_body(body: bytes) -> None:
    async with mock_client(Recorder(ok(body))) as rest:
        with pytest.raises(ResponseDecodeError) as exc:
            await rest.health()
    assert isinstance(exc.value.__cause__, msgspec.DecodeError)


# =========================================================================== retries


async def test_get_is_retried_on_503_then_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(error(503, b""), error(503, b""), ok(b'{"status":"OK"}'))
    async with mock_client(recorder) as rest:
        start = trio.current_time()
        assert (await rest.health()).status == "OK"
        elapsed = trio.current_time() - start
    assert len(recorder.requests) == 3
    # Backoff 0.5 s then 1 s, each jittered between half and all of its step.
    assert 0.75 <= elapsed <= 1.5


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retry_after_seconds_is_honoured(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    recorder = Recorder(error(status, b"", {"retry-after": "5"}), ok(b"{}"))
    async with mock_client(recorder) as rest:
        start = trio.current_time()
        assert await rest.get_voices() == {}
        assert trio.current_time() - start == pytest.approx(5.0)
    assert len(recorder.requests) == 2


async def test_retry_after_http_date_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    recorder = Recorder(error(429, b"", {"retry-after": when}), ok(HOOKS_OK))
    async with mock_client(recorder) as rest:
        start = trio.current_time()
        await rest.get_sip_hooks()
        elapsed = trio.current_time() - start
    # The date has one-second resolution and wall time moves on while the test runs.
    assert 28.0 <= elapsed <= 30.0


async def test_retry_after_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder(error(503, b"", {"retry-after": "3600"}), ok(b'{"rooms":[]}'))
    async with mock_client(recorder, retry_after_max_s=10.0) as rest:
        start = trio.current_time()
        await rest.get_livekit_rooms()
        assert trio.current_time() - start == pytest.approx(10.0)


async def test_retries_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder(error(503, b'{"error":"busy"}', {"retry-after": "1"}))
    async with mock_client(recorder, max_retries=2) as rest:
        start = trio.current_time()
        with pytest.raises(ServerError) as exc:
            await rest.get_livekit_room("r")
        assert trio.current_time() - start == pytest.approx(2.0)
    assert len(recorder.requests) == 3
    assert exc.value.error == "busy"
    assert exc.value.retry_after_s == 1.0


async def test_rate_limited_get_gives_up_with_the_hint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(error(429, b'{"error":"slow down"}', {"retry-after": "2"}))
    async with mock_client(recorder, max_retries=1) as rest:
        with pytest.raises(RateLimitedError) as exc:
            await rest.get_recording("s-1")
    assert len(recorder.requests) == 2
    assert exc.value.retry_after_s == 2.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 501])
async def test_get_is_not_retried_on_other_statuses(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    recorder = Recorder(error(status, b"{}"))
    async with mock_client(recorder) as rest:
        with pytest.raises(HTTPStatusError):
            await rest.get_voices()
    assert len(recorder.requests) == 1


WRITES: dict[str, Callable[[RestClient], Awaitable[Any]]] = {
    "speak": lambda r: r.speak("hi", DEEPGRAM),
    "token": lambda r: r.get_livekit_token("r", "n", "i"),
    "remove": lambda r: r.remove_livekit_participant("r", "p"),
    "mute": lambda r: r.mute_livekit_participant_track("r", "p", "t", True),
    "set_hooks": lambda r: r.set_sip_hooks([]),
    "delete_hooks": lambda r: r.delete_sip_hooks(["h"]),
    "transfer": lambda r: r.sip_transfer("r", "p", "+1"),
    "call": lambda r: r.sip_call("r", "n", "i", "+1", "+2"),
}


@pytest.mark.parametrize("case", sorted(WRITES))
@pytest.mark.parametrize("failure", ["503", "429", "connect"])
async def test_writes_are_never_retried(
    autojump_clock: trio.testing.MockClock, case: str, failure: str
) -> None:
    answer: httpx.Response | Exception
    if failure == "connect":
        answer = httpx.ConnectError("connection refused")
    else:
        answer = error(int(failure), b"", {"retry-after": "1"})
    recorder = Recorder(answer)
    async with mock_client(recorder, max_retries=5) as rest:
        with pytest.raises(TransportError if failure == "connect" else HTTPStatusError):
            await WRITES[case](rest)
    assert len(recorder.requests) == 1


async def test_get_is_retried_after_transport_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(
        httpx.ConnectError("refused"), httpx.ReadError("reset"), ok(b'{"status":"OK"}')
    )
    async with mock_client(recorder) as rest:
        assert (await rest.health()).status == "OK"
    assert len(recorder.requests) == 3


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectError("[Errno -2] Name or service not known"),
        httpx.ReadError("Connection reset by peer"),
        httpx.WriteError("Broken pipe"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_transport_errors_are_translated_once(
    autojump_clock: trio.testing.MockClock, exc: Exception
) -> None:
    recorder = Recorder(exc)
    async with mock_client(recorder, max_retries=2) as rest:
        with pytest.raises(TransportError) as caught:
            await rest.get_sip_hooks()
    assert caught.value.__cause__ is exc
    assert not isinstance(caught.value, RequestTimeoutError)
    assert len(recorder.requests) == 3


@pytest.mark.parametrize(
    "exc", [httpx.ConnectTimeout("connect"), httpx.ReadTimeout("read"), httpx.PoolTimeout("p")]
)
async def test_httpx_timeouts_are_request_timeouts(
    autojump_clock: trio.testing.MockClock, exc: Exception
) -> None:
    recorder = Recorder(exc)
    async with mock_client(recorder) as rest:
        with pytest.raises(RequestTimeoutError) as caught:
            await rest.health()
    assert caught.value.__cause__ is exc
    assert len(recorder.requests) == 1  # the deadline is spent: no retry


async def test_whole_request_deadline(autojump_clock: trio.testing.MockClock) -> None:
    requests: list[httpx.Request] = []

    async def never_answers(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with mock_client(never_answers, timeout_s=2.5) as rest:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError) as caught:
            await rest.get_voices()
        assert trio.current_time() - start == pytest.approx(2.5)
    assert isinstance(caught.value.__cause__, trio.TooSlowError)
    assert len(requests) == 1


# =========================================================================== lifecycle


async def test_aclose_and_use_after_close() -> None:
    recorder = Recorder(ok(b'{"status":"OK"}'))
    rest = mock_client(recorder)
    assert (await rest.health()).status == "OK"
    await rest.aclose()
    await rest.aclose()  # idempotent
    with pytest.raises(ClientError, match="closed"):
        await rest.health()
    assert len(recorder.requests) == 1


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RestClient("http://sayna.test", max_retries=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        RestClient("http://sayna.test", timeout_s=0)
