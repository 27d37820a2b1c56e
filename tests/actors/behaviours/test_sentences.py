"""Sentence splitting: the rules, and streaming never changes the result."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saynad.actors.behaviours.sentences import SentenceSplitter, split_sentences


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Wow! Really?! Yes...  Fine", ["Wow!", "Really?!", "Yes...", "Fine"]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("(Quietly.) Then loud.", ["(Quietly.)", "Then loud."]),
        ("Ask Dr. Smith and Mr. Jones.", ["Ask Dr. Smith and Mr. Jones."]),
        ("Fruit, e.g. apples, i.e. red ones.", ["Fruit, e.g. apples, i.e. red ones."]),
        ("J. R. Tolkien wrote it.", ["J. R. Tolkien wrote it."]),
        (
            "It costs 3.50 dollars. See example.com now.",
            ["It costs 3.50 dollars.", "See example.com now."],
        ),
        ("1. Open the app. 2. Tap go.", ["1. Open the app.", "2. Tap go."]),
        ("First line\nsecond line", ["First line", "second line"]),
        ("Trailing text without end", ["Trailing text without end"]),
        ("  \n\n  ", []),
        ("42", ["42"]),
    ],
)
def test_rules(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_a_sentence_is_returned_as_soon_as_it_ends() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello") == []
    assert splitter.feed(".") == []  # "Hello." might continue ("Hello.com"): wait
    assert splitter.feed(" Wor") == ["Hello."]
    assert splitter.pending == " Wor"
    assert splitter.feed("ld!\n") == ["World!"]
    assert splitter.flush() == []


_words = st.sampled_from(
    ["hello", "Dr.", "3.5", "e.g.", "yes", "J.", "ok", "why", "1.", "end", "a", "done"]
)
_marks = st.sampled_from(["", "", "", ".", "!", "?", "...", '."', "\n"])
_token = st.tuples(_words, _marks).map("".join)


@settings(max_examples=300, derandomize=True)
@given(
    tokens=st.lists(_token, min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_streaming_in_any_pieces_gives_the_same_sentences(
    tokens: list[str], cuts: list[int]
) -> None:
    text = " ".join(tokens)
    whole = split_sentences(text)
    splitter = SentenceSplitter()
    streamed: list[str] = []
    points = sorted({min(c, len(text)) for c in cuts})
    start = 0
    for point in [*points, len(text)]:
        streamed += splitter.feed(text[start:point])
        start = point
    streamed += splitter.flush()
    assert streamed == whole
    # Nothing is lost or reordered: only whitespace at the cuts changes.
    assert "".join(" ".join(whole).split()) == "".join(text.split())
    assert all(s == s.strip() and s for s in whole)
