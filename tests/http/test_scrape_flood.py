"""A flood of scrapes cannot take the event loop from the sessions.

``/metrics`` is rendered at most once per ``metrics_cache_s`` and at most
``max_concurrent_scrapes`` requests are answered at a time (the audio-stall figure under
1,000 concurrent scrapes is in docs/benchmarks-reliability.md). These tests drive the
ASGI app of a real (not running) daemon directly, so the bounds are checked exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from saynad.app import Daemon
from saynad.config import load_config
from saynad.http import MAX_CONCURRENT_SCRAPES, SCRAPE_TIMEOUT_S, HttpApp
from tests.support.samples import ENV, daemon_config


def daemon(tmp_path: Path) -> Daemon:
    path = tmp_path / "saynad.yaml"
    path.write_text(daemon_config())
    return Daemon(config_path=path, config=load_config(path, env=ENV), env=ENV)


class Scraper:
    """Calls the app as hypercorn would; tracks how many answers are being sent at once."""

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self.in_flight = 0
        self.most_in_flight = 0
        self.bodies: list[bytes] = []

    async def scrape(self, method: str = "GET") -> tuple[int, bytes]:
        scope = {"type": "http", "method": method, "path": "/metrics", "headers": []}
        status = 0
        body = b""

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                await trio.lowlevel.checkpoint()  # a socket write: other tasks run meanwhile
            else:
                body = message["body"]
                await trio.lowlevel.checkpoint()
                self.in_flight -= 1

        await self.app(scope, receive, send)
        self.bodies.append(body)
        return status, body


async def test_a_thousand_concurrent_scrapes_are_answered_a_few_at_a_time(
    tmp_path: Path,
) -> None:
    scraper = Scraper(HttpApp(daemon(tmp_path)))
    async with trio.open_nursery() as nursery:
        for _ in range(1000):
            nursery.start_soon(scraper.scrape)
    assert len(scraper.bodies) == 1000
    assert all(b"saynad_sessions" in body for body in scraper.bodies)
    assert scraper.most_in_flight == MAX_CONCURRENT_SCRAPES


async def test_the_rendered_answer_is_reused_within_the_interval(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    the_daemon = daemon(tmp_path)
    scraper = Scraper(HttpApp(the_daemon, metrics_cache_s=1.0))
    _, first = await scraper.scrape()
    the_daemon.metrics.webhook("bad_signature")  # the catalog changes…
    _, cached = await scraper.scrape()
    assert cached == first  # …but within the second the same answer is served
    await trio.sleep(1.0)
    _, fresh = await scraper.scrape()
    assert fresh != first
    assert b'outcome="bad_signature"} 1.0' in fresh


async def test_without_a_cache_every_scrape_renders(tmp_path: Path) -> None:
    the_daemon = daemon(tmp_path)
    scraper = Scraper(HttpApp(the_daemon, metrics_cache_s=0))
    _, first = await scraper.scrape()
    the_daemon.metrics.webhook("bad_signature")
    _, second = await scraper.scrape()
    assert second != first


async def test_clients_that_do_not_read_cannot_hold_the_scrape_slots(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    app = HttpApp(daemon(tmp_path))

    async def stuck(message: dict[str, Any]) -> None:
        await trio.sleep_forever()  # the client never reads: the socket write never ends

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}
    # Virtual time: a scrape that waits for ever fails the test at once.
    with trio.fail_after(SCRAPE_TIMEOUT_S + 60):
        async with trio.open_nursery() as nursery:
            for _ in range(MAX_CONCURRENT_SCRAPES):
                nursery.start_soon(app, scope, receive, stuck)
            await trio.sleep(1)
            status, _ = await Scraper(app).scrape()  # waits for a slot, then is answered
            # The stuck answers were abandoned at SCRAPE_TIMEOUT_S: their slots came free.
            assert trio.current_time() == pytest.approx(SCRAPE_TIMEOUT_S)
    assert status == 200
