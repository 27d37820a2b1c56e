"""The daemon stays healthy under hostile traffic.

One in-process daemon runs two always-on sessions, ``steady`` and ``noisy``, against an
emulator behind a frame-injecting proxy; both stream realtime audio and receive
transcripts. After a clean baseline window, an attack window:

- every data frame the server sends ``noisy`` is followed by a hostile frame from
  ``server_frames.yaml`` (the items a session counts and skips);
- the webhook route is hammered with every refused item of ``webhooks.yaml``;
- junk HTTP requests hit the other routes.

Then: ``/healthz`` answered 200 throughout, ``steady``'s transcript rate is within 20%
of its baseline and it never restarted, ``noisy`` is still ready and its malformed
frames were counted in ``saynad_ws_malformed_frames_total``.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import trio

from saynad.actors.registry import SessionState
from saynad.app import Daemon
from saynad.emulator import EmulatorOptions, open_emulator
from tests.corpus._corpus import item_frames, load_items
from tests.corpus._daemon import corpus_daemon
from tests.corpus._injector import FrameInjector
from tests.corpus._webhooks import CLOCK_SLACK_S, MAX_BODY_BYTES, build_request
from tests.support.daemon import wait_until
from tests.support.http import raw_request
from tests.support.samples import LISTEN_ANY, STT_YAML
from tests.timing import HANG_S

ROOT = Path(__file__).resolve().parents[2]
WAV = ROOT / "saynad" / "data" / "demo-caller.wav"
WINDOW_S = 1.5
TOLERANCE = 0.2

CONFIG = """\
sayna:
  url: "http://127.0.0.1:{proxy_port}"
http:
  listen: "{listen}"
logging: {{level: error, format: json}}
defaults:
  backoff: {{initial_s: 0.1, max_s: 0.5}}
  drain_timeout_s: 1
inbound:
  sip_webhook:
    template: call
    secrets: ["${{env:SAYNAD_TEST_WEBHOOK_SECRET}}"]
    max_sessions: 2
    max_body_bytes: {max_body}
templates:
  voice:
    stt: {stt}
    tts: {{provider: deepgram, model: aura-2, voice_id: aura-asteria-en, sample_rate: 16000}}
    stream_id: "{{session}}"
    behaviours:
      audio:
        source: {{path: "{wav}", realtime: true, loop: true}}
  call:
    stt: {stt}
    tts: {{provider: deepgram, model: aura-2}}
    livekit: {{}}
sessions:
  - {{name: steady, template: voice}}
  - {{name: noisy, template: voice}}
"""


def hostile_frames() -> list[bytes]:
    """The skipped-and-counted frames of the corpus, one wire frame each."""
    frames = []
    for item in load_items("server_frames.yaml"):
        if item["expect"]["outcome"] == "skipped" and item.get("when") != "before_ready":
            encoded = item_frames(item)
            if len(encoded) == 1:
                frames.append(encoded[0])
    return frames


def malformed_total(daemon: Daemon) -> float:
    """``saynad_ws_malformed_frames_total``, both reasons, as /metrics would show it."""
    registry = daemon.metrics_registry
    return sum(
        registry.get_sample_value("saynad_ws_malformed_frames_total", {"reason": reason}) or 0.0
        for reason in ("malformed", "unknown_type")
    )


async def count_over_window(injector: FrameInjector, session: str) -> int:
    start = injector.stt_results[session]
    await trio.sleep(WINDOW_S)  # a rate is counted over wall-clock time
    return injector.stt_results[session] - start


class Attack:
    """Hostile HTTP traffic, in a loop, until cancelled; counts what it sent."""

    def __init__(self, daemon: Daemon) -> None:
        self.url = daemon.http_urls[0]
        # Refused deliveries only (a replay pair starts with an accepted one).
        self.items = [
            item
            for item in load_items("webhooks.yaml")
            if not item["expect"].get("accepted") and item.get("deliveries", 1) == 1
        ]
        self.sent = 0
        self.health: list[int] = []

    async def webhooks(self) -> None:
        for round_ in range(1_000_000):
            for index, item in enumerate(self.items):
                headers, body = build_request(
                    item,
                    now=int(time.time()),
                    slack_s=CLOCK_SLACK_S,
                    default_event_id=f"EV_{round_}_{index}",
                )
                await raw_request(self.url, "POST", "/webhooks/sip", headers, body)
                self.sent += 1

    async def junk(self) -> None:
        requests = [
            ("GET", "/%00%ff../../etc/passwd"),
            ("POST", "/reload"),
            ("DELETE", "/sessions/steady"),
            ("POST", "/sessions/steady/restart"),
            ("GET", "/sessions/" + "x" * 4000),
        ]
        while True:
            for method, path in requests:
                status, _ = await raw_request(self.url, method, path, body=b"{}")
                assert status in (404, 405), (method, path, status)
                self.sent += 1

    async def probe_health(self) -> None:
        while True:
            status, _ = await raw_request(self.url, "GET", "/healthz")
            self.health.append(status)
            await trio.sleep(0.1)


async def test_daemon_stays_healthy_under_hostile_traffic(tmp_path: Path) -> None:
    options = EmulatorOptions(utterance_ms=100, interim_ms=50)
    async with open_emulator(options) as emulator, trio.open_nursery() as proxies:
        injector = FrameInjector(
            upstream_port=int(emulator.url.rsplit(":", 1)[1]),
            hostile=hostile_frames(),
            targets={"noisy"},
        )
        await proxies.start(injector.run)
        text = CONFIG.format(
            proxy_port=injector.port,
            listen=LISTEN_ANY,
            max_body=MAX_BODY_BYTES,
            stt=STT_YAML,
            wav=WAV,
        )
        async with corpus_daemon(tmp_path, text) as daemon:
            client = httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=HANG_S)
            async with client:
                with trio.fail_after(HANG_S):  # warm-up: both sessions transcribe
                    await injector.wait_for_transcripts(5, "steady", "noisy")
                baseline = await count_over_window(injector, "steady")
                malformed_before = malformed_total(daemon)

                attack = Attack(daemon)
                injector.injecting = True
                async with trio.open_nursery() as attackers:
                    attackers.start_soon(attack.webhooks)
                    attackers.start_soon(attack.junk)
                    attackers.start_soon(attack.probe_health)
                    under_attack = await count_over_window(injector, "steady")
                    attackers.cancel_scope.cancel()
                injector.injecting = False

                # Every injected frame is counted once the daemon has read it.
                injected = sum(injector.injected.values())
                await wait_until(lambda: malformed_total(daemon) - malformed_before >= injected)
                malformed_after = malformed_total(daemon)
                metrics = (await client.get("/metrics")).text
                rows = {row.name: row for row in daemon.registry.snapshot()}
                healthz = (await client.get("/healthz")).status_code
        proxies.cancel_scope.cancel()

    assert baseline >= 20, f"too few transcripts to compare rates: {baseline}"
    assert abs(under_attack - baseline) <= TOLERANCE * baseline, (baseline, under_attack)
    assert attack.sent >= 50, attack.sent
    assert attack.health, "no health probe completed during the attack"
    assert set(attack.health) == {200}
    assert healthz == 200
    assert injector.injected["noisy"] >= 20
    assert injector.injected["steady"] == 0
    # The noisy session counted each frame it skipped, and neither session broke.
    assert malformed_after - malformed_before == injector.injected["noisy"]
    assert "saynad_ws_malformed_frames_total" in metrics
    assert rows["steady"].state is SessionState.READY
    assert rows["steady"].restarts == 0
    assert rows["noisy"].state is SessionState.READY
    assert rows["noisy"].restarts == 0
    assert set(rows) == {"steady", "noisy"}, "an attack was admitted as a call"
