"""Shared fixtures: a real emulator on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from saynad.emulator import Emulator, EmulatorOptions, open_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The emulator with default options (no auth, LiveKit, SIP and recordings on)."""
    async with open_emulator(EmulatorOptions()) as emu:
        yield emu
