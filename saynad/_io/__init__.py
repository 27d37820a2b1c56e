"""Low-level I/O under both the client and the emulator (private).

- :mod:`saynad._io.sockets`: :class:`~saynad._io.sockets.FastSocketStream`, a trio
  stream straight over a non-blocking socket, and the TCP connect that makes one;
- :mod:`saynad._io.pacing`: the shared timer that paces real-time audio (public as
  :mod:`saynad.client.pacing`);
- :mod:`saynad._io.asgi`: the ASGI types and lifespan answers of both HTTP servers;
- :mod:`saynad._io.listener`: a TCP listener that steps aside from a port it shares
  with other processes (``SO_REUSEPORT``) while it cannot take more work;
- :mod:`saynad._io.httpclient`: the one way saynad makes an ``httpx.AsyncClient``
  (request bodies sent without an async generator that a cut-short send leaves behind).

This package imports nothing from saynad: it sits at the bottom of the layers drawn in
``docs/architecture.md``, beside the sans-IO :mod:`saynad.protocol`.
"""
