"""systemd's notify protocol over a real datagram socket: the Notifier alone, and a real
``saynad run`` announcing READY, STATUS, WATCHDOG, RELOADING and STOPPING."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio

from saynad.systemd import Notifier
from tests.support.notify import notify_socket
from tests.support.processes import daemon_process
from tests.support.samples import daemon_config
from tests.timing import HANG_S


async def test_notifier_is_a_no_op_without_notify_socket() -> None:
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    await notifier.ready("x")
    await notifier.stopping()

    async def never() -> bool:
        raise AssertionError("the watchdog must not run without WATCHDOG_USEC")

    await notifier.watchdog(never)  # returns at once
    notifier.close()


async def test_notifier_sends_fields_in_one_datagram_to_an_abstract_socket() -> None:
    with notify_socket(abstract=True) as listener:
        notifier = Notifier(environ={"NOTIFY_SOCKET": listener.address})
        await notifier.ready("running: 2 sessions")
        assert await listener.receive() == {"READY": "1", "STATUS": "running: 2 sessions"}
        await notifier.reloading()
        reloading = await listener.receive()
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        await notifier.stopping()
        assert await listener.receive() == {"STOPPING": "1"}
        notifier.close()


async def test_watchdog_pings_only_while_the_supervisor_answers() -> None:
    with notify_socket() as listener:
        notifier = Notifier(environ={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "100000"})
        assert notifier.watchdog_interval_s == 0.05
        answering = trio.Event()
        answering.set()

        async def alive() -> bool:
            await answering.wait()
            return True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.watchdog, alive)
            for _ in range(3):
                assert await listener.receive() == {"WATCHDOG": "1"}
            answering = trio.Event()  # the supervisor stops answering
            # Drain what was already sent, then expect silence for several intervals.
            with trio.move_on_after(0.12):
                while True:
                    await listener.receive()
            with trio.move_on_after(0.4) as quiet:
                await listener.receive()
            assert quiet.cancelled_caught, "pinged while the supervisor did not answer"
            answering.set()
            assert await listener.receive() == {"WATCHDOG": "1"}
            nursery.cancel_scope.cancel()
        notifier.close()


async def test_saynad_run_speaks_the_notify_protocol(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(daemon_config(sessions=("lobby",)))
    with notify_socket() as listener:
        env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"}
        async with daemon_process(config, env=env) as daemon:
            ready = await listener.next_with("READY")
            # READY=1 comes after the HTTP server is up.
            async with httpx.AsyncClient(base_url=daemon.url) as client:
                assert (await client.get("/healthz")).status_code == 200
            assert ready["STATUS"].startswith("running: ")
            assert "calls" in ready["STATUS"]  # inbound configured: call counts shown

            # WATCHDOG=1 keeps coming (every 0.2 s: half of WATCHDOG_USEC).
            for _ in range(3):
                await listener.next_with("WATCHDOG")

            # STATUS= follows the sessions.
            status = await listener.next_with("STATUS")
            while "1 ready" not in status["STATUS"]:
                status = await listener.next_with("STATUS")

            daemon.process.send_signal(signal.SIGHUP)
            await listener.next_with("RELOADING")
            assert "READY" in await listener.next_with("READY")

            daemon.process.send_signal(signal.SIGTERM)
            await listener.next_with("STOPPING")
            with trio.fail_after(HANG_S):
                assert await daemon.process.wait() == 0
