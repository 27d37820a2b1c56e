"""What every emulator handler is given: the shared world, the options, the tenant.

Its own module, below :mod:`~saynad.emulator.app` (which builds one per request) and
the handlers that take one (:mod:`~saynad.emulator.rest`, :mod:`~saynad.emulator.ws`),
so that none of them imports another in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

from saynad.emulator.options import EmulatorOptions
from saynad.emulator.state import EmulatorState

__all__ = ["Context"]


@dataclass
class Context:
    """What a handler needs: the shared world, the options and the caller's tenant."""

    state: EmulatorState
    options: EmulatorOptions
    tenant: str | None
