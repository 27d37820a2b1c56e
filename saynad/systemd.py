"""systemd's notify protocol over ``$NOTIFY_SOCKET`` (``Type=notify`` units).

:class:`Notifier` sends ``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=…`` and
``WATCHDOG=1`` datagrams. Without ``NOTIFY_SOCKET`` (not run by systemd) every call is
a no-op. :meth:`Notifier.watchdog` pings at half of ``WATCHDOG_USEC``, but only while
the given liveness check answers, so a wedged supervisor lets systemd restart us.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
import trio

__all__ = ["Notifier"]

log = structlog.get_logger("saynad.systemd")


class Notifier:
    """Speaks to systemd if ``NOTIFY_SOCKET`` is set; otherwise does nothing."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@'.
        self._address = ("\0" + path[1:]) if path.startswith("@") else path
        self._socket: trio.socket.SocketType | None = None
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 1_000_000 / 2

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    async def notify(self, *fields: str) -> None:
        """Send ``KEY=value`` fields in one datagram; errors are logged, never raised."""
        if not self._address:
            return
        try:
            if self._socket is None:
                self._socket = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            await self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify failed", error=str(exc), fields=fields)

    async def ready(self, status: str | None = None) -> None:
        await self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    async def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (Type=notify-reload) match the reload it asked for.
        await self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    async def stopping(self) -> None:
        await self.notify("STOPPING=1")

    async def status(self, text: str) -> None:
        await self.notify(f"STATUS={text}")

    async def watchdog(self, alive: Callable[[], Awaitable[bool]]) -> None:
        """Ping ``WATCHDOG=1`` every half interval while ``alive()`` answers True in time."""
        interval = self.watchdog_interval_s
        if interval is None or not self._address:
            return
        while True:
            with trio.move_on_after(interval) as scope:
                healthy = await alive()
            if not scope.cancelled_caught and healthy:
                await self.notify("WATCHDOG=1")
            else:
                log.error("watchdog: supervisor did not answer; not pinging systemd")
            await trio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
