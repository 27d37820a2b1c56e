"""systemd's notify protocol over a real datagram socket: the Notifier alone, and a real
``saynad run`` announcing READY, STATUS, WATCHDOG, RELOADING and STOPPING."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

from saynad.systemd import Notifier
from tests.daemon.fixtures import config_text, daemon_process, free_port
from tests.timing import HANG_S


class Listener:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: trio.socket.SocketType, address: str) -> None:
        self.sock = sock
        self.address = address
        self.messages: list[dict[str, str]] = []

    async def receive(self, *, within_s: float = HANG_S) -> dict[str, str]:
        with trio.fail_after(within_s):
            data = await self.sock.recv(4096)
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(fields)
        return fields

    async def wait_for(self, key: str, *, within_s: float = HANG_S) -> dict[str, str]:
        with trio.fail_after(within_s):
            while True:
                message = await self.receive(within_s=within_s)
                if key in message:
                    return message


@contextmanager
def notify_socket(*, abstract: bool = False) -> Iterator[Listener]:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    directory = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # AF_UNIX paths are short
    try:
        if abstract:
            name = f"saynad-test-{os.getpid()}-{os.path.basename(directory)}"
            raw.bind("\0" + name)
            address = "@" + name
        else:
            address = os.path.join(directory, "notify")
            raw.bind(address)
        yield Listener(trio.socket.from_stdlib_socket(raw), address)
    finally:
        raw.close()
        if not abstract:
            Path(directory, "notify").unlink(missing_ok=True)
        os.rmdir(directory)


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
    port = free_port()
    config = tmp_path / "saynad.yaml"
    config.write_text(config_text(port=port, sessions=("lobby",)))
    with notify_socket() as listener:
        env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"}
        async with daemon_process(config, env=env) as daemon:
            ready = await listener.wait_for("READY")
            # READY=1 comes after the HTTP server is up.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/healthz")).status_code == 200
            assert ready["STATUS"].startswith("running: ")
            assert "calls" in ready["STATUS"]  # inbound configured: call counts shown

            # WATCHDOG=1 keeps coming (every 0.2 s: half of WATCHDOG_USEC).
            for _ in range(3):
                await listener.wait_for("WATCHDOG")

            # STATUS= follows the sessions.
            status = await listener.wait_for("STATUS")
            while "1 ready" not in status["STATUS"]:
                status = await listener.wait_for("STATUS")

            daemon.process.send_signal(signal.SIGHUP)
            await listener.wait_for("RELOADING")
            assert "READY" in await listener.wait_for("READY")

            daemon.process.send_signal(signal.SIGTERM)
            await listener.wait_for("STOPPING")
            with trio.fail_after(HANG_S):
                assert await daemon.process.wait() == 0
