"""What the tests, the benchmarks and the soak share, and nothing else: no test module
imports another test module; helpers live here.

- :mod:`~tests.support.samples`: STT/TTS settings, secrets, caller audio, sample
  configurations (listening on ``127.0.0.1:0``), signed SIP webhooks;
- :mod:`~tests.support.daemon`: an in-process daemon and its HTTP client;
- :mod:`~tests.support.processes`: ``saynad run`` and emulator processes, ports;
- :mod:`~tests.support.wspeer`: a scripted WebSocket peer, on memory streams or TCP;
- :mod:`~tests.support.http`: raw HTTP requests, Prometheus exposition readers;
- :mod:`~tests.support.notify`: a stand-in for systemd's notify socket.

(``tests.timing`` holds the hang guard, ``tests.faultproxy`` the TCP fault proxy.)
"""
