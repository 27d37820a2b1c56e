"""Keepalive: an idle healthy session stays up; a stalled peer is dropped in time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from saynad.client.session import Session, open_session
from saynad.emulator import Emulator
from saynad.errors import ConnectionClosedError, ValidationError
from saynad.protocol.messages import STTConfig, TTSConfig
from tests.faultproxy import Fault, FaultProxy

STT = STTConfig("deepgram", "en-US", 16000, 1, True, "linear16", "nova-3")
TTS = TTSConfig(provider="deepgram", model="aura-2")


@asynccontextmanager
async def through_proxy(
    emulator: Emulator, interval_s: float, timeout_s: float
) -> AsyncIterator[tuple[FaultProxy, Session, trio.Nursery]]:
    """A session with keepalive, connected to the emulator through a fault proxy, and a
    nursery for the test's own tasks (cancelled when the block ends)."""
    proxy = FaultProxy("127.0.0.1", int(emulator.url.rsplit(":", 1)[1]))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        async with open_session(
            f"http://127.0.0.1:{proxy.port}",
            stt=STT,
            tts=TTS,
            keepalive_interval_s=interval_s,
            keepalive_timeout_s=timeout_s,
        ) as session:
            yield proxy, session, nursery
        nursery.cancel_scope.cancel()


async def test_idle_session_is_kept_alive_by_pings(
    emulator: Emulator, autojump_clock: trio.abc.Clock
) -> None:
    async with open_session(
        emulator.url, stt=STT, tts=TTS, keepalive_interval_s=0.1, keepalive_timeout_s=0.3
    ) as session:
        # 1.5 s of silence from the server: ~10 pings, each answered.
        with trio.move_on_after(1.5) as idle:
            async for _ in session.events():
                pass
        assert idle.cancelled_caught
        await session.speak("still here")
        with trio.fail_after(5):
            async for event in session.events():
                if type(event).__name__ == "TTSPlaybackComplete":
                    break


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.STALL, "keepalive: no answer within 0.4 s"),
        # A half-closed server is an EOF: noticed at once, no keepalive needed.
        (Fault.HALF_CLOSE, None),
    ],
)
async def test_stalled_peer_is_dropped_within_interval_plus_timeout(
    emulator: Emulator, fault: Fault, reason: str | None, autojump_clock: trio.abc.Clock
) -> None:
    interval, timeout = 0.3, 0.4
    async with through_proxy(emulator, interval, timeout) as (proxy, session, _):
        proxy.apply(fault)
        stalled_at = trio.current_time()
        with trio.fail_after(5), pytest.raises(ConnectionClosedError) as info:
            async for _ in session.events():
                pass
        noticed = trio.current_time() - stalled_at
    assert info.value.code == 1006
    assert info.value.reason == reason
    assert noticed <= interval + timeout + 0.25


async def test_keepalive_arguments_are_checked(emulator: Emulator) -> None:
    with pytest.raises(ValidationError, match="keepalive_interval_s"):
        async with open_session(emulator.url, stt=STT, tts=TTS, keepalive_interval_s=0):
            pass


async def test_stall_is_noticed_while_audio_fills_the_send_buffer(
    emulator: Emulator, autojump_clock: trio.abc.Clock
) -> None:
    """Audio keeps flowing into a stalled peer until the socket buffers are full; the
    ping then waits behind it, and the deadline must still hold."""
    interval, timeout = 0.5, 0.5
    async with through_proxy(emulator, interval, timeout) as (proxy, session, nursery):

        async def flood() -> None:
            chunk = b"\x00" * 65536
            with contextlib.suppress(ConnectionClosedError):
                while True:
                    await session.send_audio(chunk)

        proxy.apply(Fault.STALL)
        stalled_at = trio.current_time()
        nursery.start_soon(flood)
        with trio.fail_after(5), pytest.raises(ConnectionClosedError) as info:
            async for _ in session.events():
                pass
        noticed = trio.current_time() - stalled_at
    assert info.value.reason == "keepalive: no answer within 0.5 s"
    assert noticed <= interval + timeout + 0.25


async def test_closing_against_a_stalled_peer_is_bounded(
    emulator: Emulator, autojump_clock: trio.abc.Clock
) -> None:
    """Leaving the block while a sender is stuck on a full buffer still returns."""
    port = int(emulator.url.rsplit(":", 1)[1])
    proxy = FaultProxy("127.0.0.1", port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        started = 0.0
        with trio.fail_after(5):
            async with open_session(
                f"http://127.0.0.1:{proxy.port}", stt=STT, tts=TTS, close_timeout_s=0.5
            ) as session:
                proxy.apply(Fault.STALL)
                stuck = trio.Event()

                async def flood() -> None:
                    with contextlib.suppress(ConnectionClosedError):
                        while True:
                            with trio.move_on_after(0.2) as blocked:
                                await session.send_audio(b"\x00" * 65536)
                            if blocked.cancelled_caught:
                                stuck.set()
                                await session.send_audio(b"\x00" * 65536)

                nursery.start_soon(flood)
                await stuck.wait()
                started = trio.current_time()
            assert trio.current_time() - started < 0.5 + 0.5
        nursery.cancel_scope.cancel()
