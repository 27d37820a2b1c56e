"""The live session table: one row per supervised session, read-only snapshots outside.

The supervisor and the session actors write rows; the HTTP surface, metrics and the
``status`` command read :meth:`Registry.snapshot`. Everything runs on one trio thread,
so no lock is needed; a snapshot is a tuple of frozen rows.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

__all__ = ["Registry", "SessionInfo", "SessionState"]

log = structlog.get_logger("saynad.registry")


class SessionState(enum.StrEnum):
    """Where a supervised session is in its life."""

    STARTING = "starting"
    CONNECTING = "connecting"
    READY = "ready"
    BACKOFF = "backoff"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class SessionInfo:
    """One row of the table. ``since`` is wall-clock seconds (for humans and JSON)."""

    name: str
    origin: str
    template: str
    state: SessionState
    since: float
    restarts: int = 0
    last_error: str | None = None
    room: str | None = None
    stream_id: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "origin": self.origin,
            "template": self.template,
            "state": self.state.value,
            "since": self.since,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "room": self.room,
            "stream_id": self.stream_id,
        }


StateListener = Callable[[SessionState | None, SessionState], None]


@dataclass
class Registry:
    """Name → :class:`SessionInfo`. ``listeners`` hear every state transition."""

    wall_clock: Callable[[], float] = time.time
    rows: dict[str, SessionInfo] = field(default_factory=dict)
    listeners: list[StateListener] = field(default_factory=list)

    def add(self, name: str, *, origin: str, template: str) -> SessionInfo:
        old = self.rows.get(name)
        info = SessionInfo(
            name=name,
            origin=origin,
            template=template,
            state=SessionState.STARTING,
            since=self.wall_clock(),
        )
        self.rows[name] = info
        self._announce(name, old.state if old else None, info.state, info)
        return info

    def set_state(self, name: str, state: SessionState, *, error: str | None = None) -> None:
        info = self.rows.get(name)
        if info is None or (info.state is state and error is None):
            return
        updated = replace(
            info,
            state=state,
            since=self.wall_clock() if info.state is not state else info.since,
            last_error=error if error is not None else info.last_error,
        )
        self.rows[name] = updated
        if info.state is not state:
            self._announce(name, info.state, state, updated)

    def update(self, name: str, **changes: object) -> None:
        """Set ``room``, ``stream_id``, ``restarts`` or ``last_error`` of a row."""
        info = self.rows.get(name)
        if info is not None:
            self.rows[name] = replace(info, **changes)  # type: ignore[arg-type]

    def remove(self, name: str) -> None:
        self.rows.pop(name, None)

    def get(self, name: str) -> SessionInfo | None:
        return self.rows.get(name)

    def snapshot(self) -> tuple[SessionInfo, ...]:
        return tuple(self.rows.values())

    def count(self, state: SessionState) -> int:
        return sum(1 for info in self.rows.values() if info.state is state)

    def _announce(
        self, name: str, old: SessionState | None, new: SessionState, info: SessionInfo
    ) -> None:
        log.info(
            "session state",
            session=name,
            template=info.template,
            origin=info.origin,
            old=old.value if old else None,
            new=new.value,
            error=info.last_error if new in (SessionState.BACKOFF, SessionState.FAILED) else None,
        )
        for listener in self.listeners:
            listener(old, new)
