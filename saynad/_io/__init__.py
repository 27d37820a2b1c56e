"""Low-level I/O under both the client and the emulator (private).

- :mod:`saynad._io.sockets`: :class:`~saynad._io.sockets.FastSocketStream`, a trio
  stream straight over a non-blocking socket, and the TCP connect that makes one;
- :mod:`saynad._io.pacing`: the shared timer that paces real-time audio (public as
  :mod:`saynad.client.pacing`).

This package imports nothing from saynad: it sits at the bottom of the layers drawn in
``docs/architecture.md``, beside the sans-IO :mod:`saynad.protocol`.
"""
