"""How a user-supplied Sayna URL maps to the REST base and the WebSocket URL (§1.2, §8).

Accepted forms are ``http://``, ``https://``, ``ws://`` and ``wss://``. The REST base is
the URL with ``ws``→``http`` and a trailing ``/ws`` (and trailing slashes) removed; the
WebSocket URL is the URL with ``http``→``ws`` and ``/ws`` appended unless the path
already ends with it. Unlike the official client, an ``https://host/ws`` URL yields the
REST base ``https://host`` (the server has no REST routes under ``/ws``).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from saynad.errors import ValidationError

__all__ = ["rest_base_url", "websocket_url"]

_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def _split(url: str) -> tuple[str, str, str, str]:
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("URL must be a non-empty string")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or not parts.netloc:
        raise ValidationError(f"URL must start with http://, https://, ws://, or wss://: {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[: -len("/ws")]
    return scheme, parts.netloc, path, parts.query


def rest_base_url(url: str) -> str:
    """``ws://h:3001/ws`` → ``http://h:3001``; ``https://h/`` → ``https://h``."""
    scheme, netloc, path, _ = _split(url)
    return urlunsplit((_HTTP[scheme], netloc, path, "", ""))


def websocket_url(url: str) -> str:
    """``http://h:3001`` → ``ws://h:3001/ws``; ``wss://h/ws`` stays as it is."""
    scheme, netloc, path, query = _split(url)
    return urlunsplit((_SCHEMES[scheme], netloc, path + "/ws", query, ""))
