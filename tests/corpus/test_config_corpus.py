"""The broken-config corpus (``configs/``) covers every category of bad input.

The files themselves are loaded by ``tests/config/test_config_files.py``, which checks
each one fails with exactly the problems its ``# expect:`` lines name (file, line, path
and message). This module only keeps the corpus from shrinking out of a category.
"""

from __future__ import annotations

from tests.corpus._corpus import CORPUS_DIR

CONFIGS = sorted(path.stem for path in (CORPUS_DIR / "configs").glob("*.yaml"))

CATEGORIES = {
    "unknown keys": ("unknown-top-level-key", "unknown-nested-key", "unknown-session-key"),
    "wrong types": ("wrong-type-bool", "wrong-type-string-for-int", "wrong-type-null-session"),
    "duplicate keys": ("duplicate-key", "duplicate-key-in-session", "duplicate-template-name"),
    "duplicate session names": ("duplicate-session-name",),
    "unknown template": ("unknown-template", "inbound-unknown-template"),
    "missing secrets": (
        "missing-env-secret",
        "missing-file-secret",
        "missing-credential",
        "missing-secret-in-provider-auth",
    ),
    "invalid URLs": (
        "invalid-sayna-url",
        "invalid-sayna-url-no-host",
        "invalid-sayna-url-space",
        "invalid-sink-url",
        "invalid-sink-url-space",
    ),
    "bad durations": (
        "bad-duration-string",
        "bad-duration-negative",
        "bad-duration-infinite",
        "bad-duration-zero",
        "bad-duration-nan",
        "bad-duration-bool",
        "bad-duration-minutes",
    ),
}


def test_every_category_has_its_files() -> None:
    missing = {
        category: [name for name in names if name not in CONFIGS]
        for category, names in CATEGORIES.items()
    }
    assert not any(missing.values()), missing
    assert len(CONFIGS) >= 60
