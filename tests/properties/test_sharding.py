"""Properties of rendezvous hashing (:mod:`saynad.sharding`): every session has exactly
one shard; adding a shard moves only sessions onto it, removing one moves only its own;
the table is the same from any shard; and the places given on the command line, in the
environment or in the file resolve as documented."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saynad.config import load_config_text
from saynad.errors import ConfigError
from saynad.sharding import MAX_SHARDS, Shard, assign, owner, parse_shard, shard_override

SETTINGS = settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

names = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True)
counts = st.integers(min_value=1, max_value=16)


@SETTINGS
@given(names, counts)
def test_each_session_runs_on_exactly_one_shard(fleet: list[str], count: int) -> None:
    table = assign(fleet, count)
    assert set(table) == set(fleet)
    for name in fleet:
        owning = [index for index in range(count) if Shard(index, count).owns(name)]
        assert owning == [table[name]]


@SETTINGS
@given(names, counts)
def test_adding_a_shard_moves_sessions_only_onto_it(fleet: list[str], count: int) -> None:
    before, after = assign(fleet, count), assign(fleet, count + 1)
    for name in fleet:
        assert after[name] in (before[name], count), name


@SETTINGS
@given(names, st.integers(min_value=2, max_value=16))
def test_removing_the_last_shard_moves_only_its_sessions(fleet: list[str], count: int) -> None:
    before, after = assign(fleet, count), assign(fleet, count - 1)
    for name in fleet:
        if before[name] != count - 1:
            assert after[name] == before[name], name


def test_going_from_3_to_4_moves_about_a_quarter() -> None:
    fleet = [f"session-{i}" for i in range(4000)]
    before, after = assign(fleet, 3), assign(fleet, 4)
    moved = sum(before[name] != after[name] for name in fleet)
    # Expected 1/4 (1000); a hash that moved everything, or nothing, fails by far.
    assert 850 < moved < 1150
    per_shard = [list(after.values()).count(index) for index in range(4)]
    assert min(per_shard) > 850, per_shard


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", (0, 1)), ("2/3", (2, 3)), (" 1/4 ", (1, 4)), ("5", (5, None))],
)
def test_parse_shard(text: str, expected: tuple[int, int | None]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    "text", ["", "3/3", "-1/3", "1/0", "a/2", "1/", "/2", "1/2/3", "١/٣", f"0/{MAX_SHARDS + 1}"]
)
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is saynad's, checked below
        parse_shard(text)


def test_the_command_line_wins_over_the_environment_which_wins_over_the_file() -> None:
    env = {"SAYNAD_SHARD": "1/3"}
    assert shard_override("2/4", env) == ((2, 4), "--shard")
    assert shard_override(None, env) == ((1, 3), "SAYNAD_SHARD")
    assert shard_override(None, {"SAYNAD_SHARD": "2"}) == ((2, None), "SAYNAD_SHARD")
    assert shard_override(None, {"SAYNAD_SHARD": " "}) is None
    assert shard_override(None, {}) is None
    with pytest.raises(ValueError, match=r"^SAYNAD_SHARD: "):
        shard_override(None, {"SAYNAD_SHARD": "3/3"})
    config = load_config_text("sharding: {index: 1, count: 5}\n", env={})
    assert config.shard() == Shard(1, 5)
    assert config.shard(3) == Shard(3, 5)  # an index alone takes the file's count
    assert config.shard(0, 2) == Shard(0, 2)
    with pytest.raises(ValueError, match="not below"):
        config.shard(5)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("sharding: {index: 3, count: 3}\n", "sharding.index"),
        ("sharding: {count: 0}\n", "sharding.count"),
        (f"sharding: {{count: {MAX_SHARDS + 1}}}\n", "sharding.count"),
        ('http: {webhooks: {listen: "127.0.0.1:9000"}}\n', "http.webhooks"),
        ('http: {webhooks: {listen: "127.0.0.1:9000", when_full: close}}\n', "when_full"),
        ('http: {webhooks: {listen: "127.0.0.1:0", reuse_port: true}}\n', "webhooks.listen"),
        (
            'http: {listen: "127.0.0.1:9000", webhooks: {listen: "127.0.0.1:9000"}}\n',
            "webhooks.listen",
        ),
    ],
)
def test_the_file_refuses_a_bad_place(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={})
    assert any(where in problem for problem in info.value.problems), info.value.problems


def test_the_table_is_the_same_in_every_release() -> None:
    # Shards of two versions side by side (a rolling update) must agree, or a session
    # would run twice: these values are fixed for good.
    assert [owner(f"desk-{i:02d}", 3) for i in range(12)] == [0, 0, 1, 1, 2, 0, 2, 0, 1, 1, 2, 0]
    assert [owner(f"desk-{i:02d}", 5) for i in range(12)] == [0, 0, 1, 1, 3, 4, 4, 4, 3, 1, 2, 4]
