"""HTTP from the tests' side: a raw request that sends exactly what it is told, and
readers of a Prometheus text exposition.

The raw client exists because httpx (rightly) refuses to send some requests the tests
need: header names that are not tokens, duplicate signature headers in a chosen order,
raw latin-1 bytes in header values, a Content-Length that lies.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import trio
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in a Prometheus exposition, by sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


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
