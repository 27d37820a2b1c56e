"""An in-process daemon for the corpus: its webhook secret is the corpus secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from saynad.app import Daemon
from tests.corpus._webhooks import SECRET
from tests.support.daemon import daemon_in_process
from tests.support.samples import ENV, daemon_config

CORPUS_ENV = {**ENV, "SAYNAD_TEST_WEBHOOK_SECRET": SECRET}


@asynccontextmanager
async def corpus_daemon(
    tmp_path: Path, text: str | None = None, **options: Any
) -> AsyncIterator[Daemon]:
    """A daemon whose webhook secret is the corpus secret; ``text`` replaces the config."""
    path = tmp_path / "saynad.yaml"
    path.write_text(text if text is not None else daemon_config(**options))
    # Every item compares the counters before and after it: no cached scrape.
    async with daemon_in_process(path, env=CORPUS_ENV, metrics_cache_s=0) as daemon:
        yield daemon
