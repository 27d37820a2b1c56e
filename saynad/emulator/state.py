"""The emulator's in-memory world: LiveKit rooms and participants, SIP hooks, recordings.

One :class:`EmulatorState` is shared by the REST handlers and every WebSocket session
of one emulator. Tests reach it through ``emulator.state`` to script the world (a
caller joins, a caller hangs up, a data packet arrives) and to inspect what saynad
sent (``wire_log``).

Every record the emulator keeps of what it was asked (the WebSocket frames, the data
messages, the transfers, the dialled SIP calls, the tokens handed out, the recordings)
is bounded: the last :data:`RECORDS_KEPT` of each (``wire_log_size``), the oldest
dropped first. An
emulator serving a demo for weeks (``make run``) holds no more than that. The rooms are
the world itself: they go when they are deleted, as on the real server.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "RECORDS_KEPT",
    "Access",
    "EmulatorState",
    "Participant",
    "Room",
    "RoomEvent",
    "SipHookEntry",
]

Access = Literal["ok", "absent", "denied"]

RECORDS_KEPT: Final = 10_000
"""How many of each record (frames, messages, transfers, calls, tokens) an emulator keeps
by default: the most recent, the oldest dropped first."""

_ids = itertools.count(1)


def new_sid(prefix: str) -> str:
    """A LiveKit-style id: ``RM_000001``, ``PA_000002``, ``TR_000003``."""
    return f"{prefix}_{next(_ids):06d}"


@dataclass
class Participant:
    """A participant of an emulated LiveKit room."""

    identity: str
    name: str = ""
    kind: str = "STANDARD"  # STANDARD | INGRESS | EGRESS | SIP | AGENT
    sid: str = field(default_factory=lambda: new_sid("PA"))
    state: str = "ACTIVE"
    joined_at: int = field(default_factory=lambda: int(time.time()))
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    is_publisher: bool = True
    # track sid -> muted
    tracks: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class RoomEvent:
    """Something that happened in a room, fanned out to the sessions that joined it.

    ``kind``: ``participant_connected`` | ``participant_disconnected`` | ``message``.
    """

    kind: str
    participant: Participant
    payload: dict[str, Any] = field(default_factory=dict)


RoomListener = Callable[[RoomEvent], None]


@dataclass
class Room:
    """An emulated LiveKit room. ``metadata`` holds the owner under ``auth_id``."""

    name: str
    sid: str = field(default_factory=lambda: new_sid("RM"))
    creation_time: int = field(default_factory=lambda: int(time.time()))
    metadata: dict[str, Any] = field(default_factory=dict)
    max_participants: int = 0
    active_recording: bool = False
    participants: dict[str, Participant] = field(default_factory=dict)
    listeners: list[RoomListener] = field(default_factory=list)
    # TTS audio the agents of WebSocket sessions published to this room (bytes of PCM).
    published_audio_bytes: int = 0

    @property
    def owner(self) -> str | None:
        owner = self.metadata.get("auth_id")
        return owner if isinstance(owner, str) and owner.strip() else None

    def metadata_text(self) -> str:
        return json.dumps(self.metadata, separators=(",", ":")) if self.metadata else ""

    def notify(self, event: RoomEvent) -> None:
        for listener in list(self.listeners):
            listener(event)


@dataclass
class SipHookEntry:
    """A SIP hook as the server stores it: ``host`` trimmed and lower-cased."""

    host: str
    url: str
    auth_id: str


class EmulatorState:
    """Everything the emulated server remembers between requests."""

    def __init__(self, *, wire_log_size: int = RECORDS_KEPT) -> None:
        """``wire_log_size``: how many of each record are kept (the most recent)."""
        self.rooms: dict[str, Room] = {}
        self.sip_hooks: dict[str, SipHookEntry] = {}
        self.fixed_hook_hosts: frozenset[str] = frozenset()
        # Recordings by stream id, the oldest first (bounded: keep_recording).
        self.recordings: dict[str, bytes] = {}
        self.records_kept = wire_log_size
        # What was asked of the server, in arrival order (bounded): transfers, dialled
        # SIP calls, LiveKit tokens handed out.
        self.transfers: deque[dict[str, str]] = deque(maxlen=wire_log_size)
        self.calls: deque[dict[str, Any]] = deque(maxlen=wire_log_size)
        self.tokens: deque[dict[str, str]] = deque(maxlen=wire_log_size)
        # Raw text frames received on every WebSocket, in arrival order (bounded).
        self.wire_log: deque[str] = deque(maxlen=wire_log_size)
        self.connections_total = 0
        self.connections_open = 0
        # Data messages the agents of WebSocket sessions published (``send_message``):
        # ``{"room", "identity", "topic", "payload"}`` with the payload JSON text (bounded).
        self.published_messages: deque[dict[str, str]] = deque(maxlen=wire_log_size)
        # The turn-detection threshold last set by ``update_config`` (server-global).
        self.turn_threshold: float | None = None
        # Room events a WebSocket session could not queue (its room queue was full).
        self.dropped_room_events = 0
        # For benchmarks, off (None) unless set to a dict: stream_id → [when the
        # session's first speak was handled, when its first audio frame (TTS, or a
        # loading clip played before it) was written], on time.monotonic() (comparable
        # across processes on one machine).
        self.speech_timings: dict[str, list[float]] | None = None

    # ---------------------------------------------------------------- rooms

    def access(self, room_name: str, tenant: str | None) -> Access:
        """Tenant check of §1.5 for operations on an existing room."""
        room = self.rooms.get(room_name)
        if room is None:
            return "absent"
        if tenant is None:
            return "ok"
        return "ok" if room.owner == tenant else "denied"

    def ensure_room(self, room_name: str, tenant: str | None) -> tuple[Room | None, bool]:
        """Create or claim a room for ``tenant``. Returns (room, allowed)."""
        room = self.rooms.get(room_name)
        if room is None:
            room = Room(name=room_name)
            if tenant is not None:
                room.metadata["auth_id"] = tenant
            self.rooms[room_name] = room
            return room, True
        if tenant is None:
            return room, True
        if room.owner is None:
            room.metadata["auth_id"] = tenant
            return room, True
        return room, room.owner == tenant

    def delete_room(self, room_name: str) -> None:
        self.rooms.pop(room_name, None)

    def create_room(self, room_name: str, *, owner: str | None = None) -> Room:
        """Create ``room_name`` (or return it), owned by ``owner`` when given (tests)."""
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = Room(name=room_name)
        if owner is not None:
            room.metadata["auth_id"] = owner
        return room

    def keep_recording(self, stream_id: str, data: bytes) -> None:
        """Store a session's recording; past :attr:`records_kept` the oldest goes."""
        self.recordings.pop(stream_id, None)
        self.recordings[stream_id] = data
        while len(self.recordings) > self.records_kept:
            del self.recordings[next(iter(self.recordings))]

    # ---------------------------------------------------------------- SIP hooks

    def add_config_hook(self, host: str, url: str, auth_id: str = "") -> SipHookEntry:
        """Add a hook from the server's own configuration: REST may neither change nor
        delete it (405), as for hooks written in the real server's config file."""
        entry = SipHookEntry(host=host.strip().lower(), url=url, auth_id=auth_id.strip())
        self.sip_hooks[entry.host] = entry
        self.fixed_hook_hosts = self.fixed_hook_hosts | {entry.host}
        return entry

    def hook_list(self) -> list[SipHookEntry]:
        """The merged runtime hook list, in insertion order."""
        return list(self.sip_hooks.values())

    # ---------------------------------------------------------------- scripting (tests)

    def join(
        self,
        room_name: str,
        identity: str,
        *,
        name: str = "",
        kind: str = "STANDARD",
        attributes: dict[str, str] | None = None,
        tracks: tuple[str, ...] = (),
    ) -> Participant:
        """A remote participant joins ``room_name`` (created if absent)."""
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = Room(name=room_name)
        participant = Participant(
            identity=identity,
            name=name,
            kind=kind,
            attributes=dict(attributes or {}),
            tracks=dict.fromkeys(tracks, False),
        )
        room.participants[identity] = participant
        room.notify(RoomEvent("participant_connected", participant))
        return participant

    def leave(self, room_name: str, identity: str) -> None:
        """A remote participant leaves; every session in the room ends ~100 ms later."""
        room = self.rooms.get(room_name)
        if room is None:
            return
        participant = room.participants.pop(identity, None)
        if participant is not None:
            room.notify(RoomEvent("participant_disconnected", participant))

    def publish_data(
        self, room_name: str, identity: str, payload: bytes, *, topic: str | None = None
    ) -> None:
        """A participant publishes a data packet to the room."""
        room = self.rooms.get(room_name)
        if room is None:
            return
        participant = room.participants.get(identity) or Participant(identity=identity)
        room.notify(
            RoomEvent("message", participant, {"payload": payload, "topic": topic or "default"})
        )
