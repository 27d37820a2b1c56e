"""Readers of the lifecycle tests' transcript files (jsonl sinks of
:func:`tests.support.samples.talking_fleet`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_entries(path: Path, *, growing: bool = False) -> list[dict[str, Any]]:
    """Every JSON line of a transcript file. A torn last line fails the test, unless the
    file is ``growing`` (being written while read): then it is left out."""
    text = path.read_text() if path.exists() else ""
    if growing:
        text = text[: text.rfind("\n") + 1]
    assert not text or text.endswith("\n"), f"{path}: a torn last line: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def user_numbers(entries: list[dict[str, Any]]) -> list[int]:
    """The emulator's sequence numbers of the final transcripts (``"7: …"`` → 7)."""
    return [int(e["text"].split(":", 1)[0]) for e in entries if e["role"] == "user"]


def assert_complete(numbers: list[int], received: int, where: str) -> None:
    """Every final transcript 1..received is in the file exactly once, in order."""
    assert numbers == list(range(1, received + 1)), (
        f"{where}: {received} transcripts received, file holds {len(numbers)} "
        f"(first missing: {next((i for i in range(1, received + 1) if i not in numbers), None)})"
    )
