"""One set of credential names: the unit, docs/operations.md and every shipped example
agree, so an install by the docs gives every example exactly what it needs."""

from __future__ import annotations

import json

import yaml

from saynad.shipped import example_file, example_names, read_shipped
from tests.deploy._files import (
    CREDSTORE,
    OPERATIONS,
    all_example_credentials,
    docs_credential_files,
    unit_credentials,
)


def test_every_credential_an_example_uses_is_loaded_by_the_unit() -> None:
    loaded = set(unit_credentials())
    for name, used in all_example_credentials().items():
        assert used <= loaded, f"{name} uses {sorted(used - loaded)}, the unit loads {loaded}"


def test_the_unit_loads_no_credential_that_no_example_uses() -> None:
    used = set().union(*all_example_credentials().values())
    assert set(unit_credentials()) <= used, sorted(set(unit_credentials()) - used)


def test_the_unit_reads_each_credential_by_name_from_the_credential_store() -> None:
    # LoadCredential=NAME:saynad.NAME: found in /etc/credstore, skipped when missing. An
    # absolute path would fail the start when its file is missing (243/CREDENTIALS).
    for name, source in unit_credentials().items():
        assert source == f"saynad.{name}", (name, source)


def test_the_docs_create_exactly_the_files_the_unit_reads() -> None:
    created = docs_credential_files()
    assert len(created) == len(set(created)), "the docs create a credential file twice"
    assert set(created) == set(unit_credentials().values())
    text = OPERATIONS.read_text()
    assert f"install -d -m 0700 {CREDSTORE}" in text
    for name in unit_credentials():  # the table says what each one is for
        assert f"| `{name}` |" in text, name


def test_the_examples_read_no_secret_from_the_environment() -> None:
    # Under systemd the environment comes from the unit; secrets belong in credentials.
    for name in example_names():
        document = yaml.safe_load(read_shipped(example_file(name)))
        assert "${env:" not in json.dumps(document), name
