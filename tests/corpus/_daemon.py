"""An in-process daemon for the corpus, and a raw HTTP client that sends what it is told.

The raw client exists because httpx (rightly) refuses to send some of the corpus:
header names that are not tokens, duplicate signature headers in a chosen order, raw
latin-1 bytes in header values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from saynad.app import Daemon
from saynad.config import load_config
from tests.corpus._webhooks import SECRET
from tests.daemon.fixtures import ENV, config_text, free_port

CORPUS_ENV = {**ENV, "SAYNAD_TEST_WEBHOOK_SECRET": SECRET}


@asynccontextmanager
async def corpus_daemon(
    tmp_path: Path, text: str | None = None, **options: Any
) -> AsyncIterator[Daemon]:
    """A daemon whose webhook secret is the corpus secret; ``text`` replaces the config."""
    path = tmp_path / "saynad.yaml"
    path.write_text(text if text is not None else config_text(port=free_port(), **options))
    # Every item compares the counters before and after it: no cached scrape.
    daemon = Daemon(
        config_path=path,
        config=load_config(path, env=CORPUS_ENV),
        env=CORPUS_ENV,
        metrics_cache_s=0,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        yield daemon
        nursery.cancel_scope.cancel()


def _bytes(value: str | bytes) -> bytes:
    # A str goes out as UTF-8, as HTTP clients send non-ASCII text; bytes go out as given.
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


async def raw_request(
    url: str,
    method: str,
    path: str,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    declared_length: int | None = None,
    chunked: bool = False,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection; the status and the raw response head.

    ``str`` header names and values go out as UTF-8, ``bytes`` exactly as given.
    ``declared_length`` sends that Content-Length whatever the body; ``chunked`` sends
    the body as one chunk, without any length up front.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        lines = [f"{method} {path} HTTP/1.1".encode(), f"host: {parts.netloc}".encode()]
        lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
        if chunked:
            lines.append(b"transfer-encoding: chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        else:
            length = len(body) if declared_length is None else declared_length
            lines.append(b"content-length: %d" % length)
        lines.append(b"connection: close")
        await stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some()
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0]
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), data[:200]
    return int(status_line.split()[1]), head


def metric_value(text: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
