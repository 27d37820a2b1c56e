"""The files of a sharded host: the sharded-host example and the Prometheus targets.

The example uses the keys of sharding (``sharding``, ``http.port_per_shard``,
``http.webhooks``); the real ``saynad check`` loads it whole, as each shard would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import trio
import yaml

from saynad.shipped import example_file, read_shipped, shipped_path
from tests.deploy._files import (
    SHARDED_EXAMPLES,
    loadable_examples,
    saynad_check,
    unit_settings,
)
from tests.observability.test_prometheus import prometheus, query
from tests.support.daemon import running_daemon
from tests.timing import HANG_S


def _example() -> dict[str, object]:
    (name,) = SHARDED_EXAMPLES
    document = yaml.safe_load(read_shipped(example_file(name)))
    assert isinstance(document, dict)
    return document


def test_the_sharded_example_checks_with_its_sharding_keys(tmp_path: Path) -> None:
    document = _example()
    http = document["http"]
    assert isinstance(http, dict)
    assert document["sharding"] == {"count": 4}
    assert http["port_per_shard"] is True
    assert http["webhooks"] == {"listen": "127.0.0.1:8081", "reuse_port": True}
    result = saynad_check(yaml.safe_dump(document), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 always-on" in result.stdout
    # The whole file is among the examples every example test checks.
    assert set(SHARDED_EXAMPLES) <= set(loadable_examples())


def test_the_example_and_the_template_agree_on_the_shard_count() -> None:
    template = unit_settings(shipped_path("systemd/saynad@.service").read_text())
    assert "SAYNAD_SHARD=%i" in template["Environment"]  # the index only: the count is here
    sharding = _example()["sharding"]
    assert isinstance(sharding, dict)
    assert set(sharding) == {"count"}


def test_the_prometheus_targets_list_one_daemon_and_show_the_shards() -> None:
    scrape = yaml.safe_load(shipped_path("prometheus/prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "saynad"  # what the alerts select
    (discovery,) = job["file_sd_configs"]
    assert discovery["files"] == ["saynad-targets.yml"]
    targets_text = shipped_path("prometheus/saynad-targets.yml").read_text()
    (group,) = yaml.safe_load(targets_text)
    assert group["targets"] == ["127.0.0.1:9464"]
    # The commented list for the sharded example: http.listen's port + I, I < count.
    http = _example()["http"]
    sharding = _example()["sharding"]
    assert isinstance(http, dict)
    assert isinstance(sharding, dict)
    host, _, port = str(http["listen"]).rpartition(":")
    shards = [f'"{host}:{int(port) + index}"' for index in range(int(sharding["count"]))]
    assert f"#   - targets: [{', '.join(shards)}]" in targets_text


async def test_a_real_prometheus_scrapes_every_target_of_the_targets_file(tmp_path: Path) -> None:
    # The shipped prometheus.yml (at a 1 s interval) with the targets file written as its
    # comment says for shards: one port per daemon. Two daemons stand in for two shards.
    directory = tmp_path / "prometheus"
    shutil.copytree(shipped_path("prometheus/prometheus.yml").parent, directory)
    config = directory / "prometheus.yml"
    config.write_text(
        config.read_text()
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("scrape_timeout: 5s", "scrape_timeout: 1s")
    )
    for shard in ("shard0", "shard1"):
        (tmp_path / shard).mkdir()
    async with (
        running_daemon(tmp_path / "shard0", sessions=("lobby",)) as (first, _),
        running_daemon(tmp_path / "shard1", sessions=("desk",)) as (second, _),
    ):
        addresses = [d.http_urls[0].removeprefix("http://") for d in (first, second)]
        targets = ", ".join(f'"{address}"' for address in addresses)
        (directory / "saynad-targets.yml").write_text(
            f"- targets: [{targets}]\n  labels:\n    service: saynad\n"
        )
        async with (
            prometheus(tmp_path / "data", config=config) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            with trio.fail_after(HANG_S):
                while True:
                    result = await query(client, 'up{job="saynad",service="saynad"} == 1')
                    if sorted(series["metric"]["instance"] for series in result) == sorted(
                        addresses
                    ):
                        break
                    await trio.sleep(0.25)
