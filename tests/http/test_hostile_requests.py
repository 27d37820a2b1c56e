"""Odd requests get the answers HTTP clients expect, and hostile values never make a log
line unbounded: ``HEAD`` on the GET routes, 414 for very long request targets, and a
webhook carrying 64 KB of SIP headers against a real ``saynad run``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from saynad.http import MAX_HEAD_BYTES, MAX_URL_BYTES
from saynad.protocol.webhooks import (
    SipWebhook,
    WebhookParticipant,
    WebhookRoom,
    encode_webhook_payload,
)
from tests.support.daemon import running_daemon
from tests.support.http import raw_request
from tests.support.processes import daemon_process
from tests.support.samples import daemon_config, signed


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/sessions"])
async def test_get_routes_answer_head_without_a_body(tmp_path: Path, path: str) -> None:
    # /metrics: one rendering answers both (kept longer than any stall of the machine),
    # so the HEAD's length is the GET's.
    async with running_daemon(tmp_path, fields={"metrics_cache_s": 3600}) as (_daemon, client):
        head = await client.head(path)
        get = await client.get(path)
    assert head.status_code == get.status_code
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path == "/metrics":
        assert int(head.headers["content-length"]) == len(get.content)


async def test_other_methods_are_told_what_is_allowed(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as (_daemon, client):
        response = await client.delete("/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_a_very_long_request_target_is_414(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as (daemon, _client):
        url = daemon.http_urls[0]
        long_path = "/sessions/" + "a" * 20_000
        status, _ = await raw_request(url, "GET", long_path)
        assert status == 414
        status, _ = await raw_request(url, "GET", "/metrics?" + "q=1&" * (MAX_URL_BYTES // 4))
        assert status == 414
        # Just under the limit: routed as usual.
        status, _ = await raw_request(url, "GET", "/sessions/" + "a" * (MAX_URL_BYTES - 20))
        assert status == 404
    assert MAX_HEAD_BYTES > 20_000


async def test_a_webhook_with_64_kb_of_sip_headers_logs_bounded_lines(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(daemon_config(max_body_bytes=1 << 20))
    sip_headers = {f"x-custom-{i}": "h" * 1000 for i in range(64)}
    sip_headers["x-one-huge"] = "H" * 65536
    payload = SipWebhook(
        participant=WebhookParticipant(name="Caller", identity="sip_+1555", sid="PA_1"),
        room=WebhookRoom(name="sip-room-" + "r" * 5000, sid="RM_1"),
        from_phone_number="+1555" + "9" * 5000,
        to_phone_number="+15557654321",
        room_prefix="sip-",
        sip_host="sip.example.com",
        sip_headers=sip_headers,
    )
    body = encode_webhook_payload(payload)
    assert len(body) > 128_000
    async with (
        daemon_process(config) as daemon,
        httpx.AsyncClient(base_url=daemon.url, timeout=30) as client,
    ):
        response = await client.post("/webhooks/sip", headers=signed(body, "EV_big"), content=body)
        assert response.status_code == 202
        admitted = await daemon.event("inbound call admitted")
        await daemon.wait_for(
            lambda line: (
                line.get("event") == "session state"
                and line.get("session") == "sip-EV_big"
                and line.get("new") == "ready"
            )
        )
    assert admitted["room"].endswith("chars]")
    for line in daemon.lines:
        assert len(json.dumps(line)) < 16_384, line.get("event")
    call_lines = [line for line in daemon.lines if "sip_headers" in line]
    assert call_lines
    for line in call_lines:
        headers = line["sip_headers"]
        assert len(headers) <= 33  # 32 headers and one "…" entry saying how many more
        assert headers["…"] == f"+{len(sip_headers) - 32} more"
