"""Loading the bad-input corpus: YAML files of items, each with a name and an outcome.

Every corpus file is a list of mappings with at least ``name`` (unique in the file) and
``expect``. ``about`` says in prose why the item is there. Text may use ``expand`` to
build long inputs: ``{"@OPEN@": ["[", 10000]}`` replaces ``@OPEN@`` with 10,000 ``[``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from saynad.protocol.framing import BINARY, CONTINUATION, TEXT
from tests.support.wspeer import encode_frame

CORPUS_DIR = Path(__file__).resolve().parent


def load_items(filename: str) -> list[dict[str, Any]]:
    """The items of ``tests/corpus/{filename}``, checked for names and outcomes."""
    path = CORPUS_DIR / filename
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(items, list), f"{filename}: expected a list of items"
    names = [item.get("name") for item in items]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"{filename}: duplicate item names {duplicates}"
    for item in items:
        assert isinstance(item.get("name"), str), f"{filename}: an item without a name"
        assert isinstance(item.get("expect"), dict), f"{filename}: {item['name']} has no expect"
    return items


def params(filename: str) -> list[Any]:
    """``pytest.param`` per item, with the item's name as its id.

    An item with ``known_bug`` (a sentence saying what is wrong) states the documented
    outcome but is expected to fail, strictly: the test goes red once the bug is fixed,
    so the marker cannot outlive it.
    """
    return [
        pytest.param(
            item,
            id=item["name"],
            marks=[pytest.mark.xfail(strict=True, reason=item["known_bug"])]
            if "known_bug" in item
            else [],
        )
        for item in load_items(filename)
    ]


def expand(text: str, spec: dict[str, list[Any]] | None) -> str:
    """Replace each marker of ``spec`` found in ``text`` by its unit repeated ``count``
    times (an item may expand its body, its event id or both)."""
    for marker, (unit, count) in (spec or {}).items():
        text = text.replace(marker, str(unit) * int(count))
    return text


def item_frames(item: dict[str, Any]) -> list[bytes]:
    """The wire bytes of the item's frame (several when it is fragmented)."""
    if "payload_hex" in item:
        payload = bytes.fromhex(item["payload_hex"])
    elif "size" in item:
        payload = b"a" * item["size"]
    else:
        payload = expand(item["text"], item.get("expand")).encode()
    opcode = item.get("opcode", BINARY if item.get("binary") else TEXT)
    mask = b"\x01\x02\x03\x04" if item.get("masked") else None
    count = item.get("fragments", 1)
    step = max(1, -(-len(payload) // count))
    parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
    return [
        encode_frame(
            opcode if index == 0 else CONTINUATION,
            part,
            fin=item.get("fin", True) and index == len(parts) - 1,
            rsv=item.get("rsv", 0),
            mask=mask,
        )
        for index, part in enumerate(parts)
    ]
