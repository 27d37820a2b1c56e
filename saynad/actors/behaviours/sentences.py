"""Sentence splitting for streamed replies (pure: no I/O, no clock).

An agent's reply arrives in pieces (LLM tokens, HTTP chunks). Each complete sentence is
spoken as soon as it ends, so the caller hears the first sentence while the rest is
still being generated. The rules, kept deliberately small:

- a sentence ends at ``.``, ``!``, ``?`` or ``…`` (runs such as ``?!`` or ``...``
  included, and closing quotes or brackets right after them) **followed by
  whitespace** — so ``3.5``, ``example.com`` and a period at the very end of a chunk
  (the next chunk may continue the word) do not end one;
- a line break always ends a sentence (list items, paragraphs, line-per-chunk replies);
- a period after a common abbreviation (``Mr.``, ``Dr.``, ``e.g.`` …) or a single
  capital initial (``J. Smith``) does not end one;
- a candidate without any letter or digit (``1.`` of a numbered list counts: it has a
  digit but no letter) is not spoken on its own — it stays with the sentence after it;
- at the end of the stream, whatever remains is the last sentence.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SentenceSplitter", "split_sentences"]

_CLOSERS: Final = "\"'”’»)]"
_END: Final = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*(?=\s)|\n")
_LAST_WORD: Final = re.compile(r"(\S+)$")
_LETTER: Final = re.compile(r"[^\W\d_]")

ABBREVIATIONS: Final = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "e.g",
        "i.e",
        "a.m",
        "p.m",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "mt",
        "ft",
        "fig",
    }
)
"""Words whose trailing period does not end a sentence (compared lower-case)."""


def _is_abbreviation(before: str) -> bool:
    match = _LAST_WORD.search(before)
    if match is None:
        return False
    word = match.group(1).lstrip("([\"'“‘")
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: "J. Smith"
    return word.lower() in ABBREVIATIONS


class SentenceSplitter:
    """Feed streamed text; get complete sentences back as soon as they end.

    >>> s = SentenceSplitter()
    >>> s.feed("Hello there. How ar")
    ['Hello there.']
    >>> s.feed("e you? I am")
    ['How are you?']
    >>> s.flush()
    ['I am']
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = ""

    @property
    def pending(self) -> str:
        """Text received but not yet returned as a sentence."""
        return self._buffer

    def feed(self, chunk: str) -> list[str]:
        """Add ``chunk``; return the sentences it completed, in order."""
        if not chunk:
            return []
        buffer = self._buffer + chunk
        sentences: list[str] = []
        start = 0
        for match in _END.finditer(buffer):
            end = match.end()
            mark = match.group()
            if mark.rstrip(_CLOSERS) == "." and _is_abbreviation(buffer[start : match.start()]):
                continue
            candidate = buffer[start:end].strip()
            if not candidate:
                start = end
                continue
            if _LETTER.search(candidate) is None:
                continue  # "1." alone is not worth a speak frame: keep it with what follows
            sentences.append(candidate)
            start = end
        self._buffer = buffer[start:]
        return sentences

    def flush(self) -> list[str]:
        """The stream ended: return what remains (if anything) as the last sentence."""
        rest = self._buffer.strip()
        self._buffer = ""
        return [rest] if rest else []


def split_sentences(text: str) -> list[str]:
    """Split a complete text into sentences with the rules of :class:`SentenceSplitter`."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()
