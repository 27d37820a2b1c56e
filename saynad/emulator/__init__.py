"""A local Sayna server for tests, benchmarks and ``make run``.

It follows ``sayna-protocol.md``: the WebSocket session (``config`` → ``ready``,
deterministic STT and TTS, room events, the server's error texts) and the REST API with
in-memory rooms, SIP hooks and recordings, on one loopback port.
"""

from saynad.emulator.app import Emulator, open_emulator, serve_emulator
from saynad.emulator.options import Chaos, EmulatorOptions, Tenant

__all__ = ["Chaos", "Emulator", "EmulatorOptions", "Tenant", "open_emulator", "serve_emulator"]
