"""The ``saynad`` executable's entry point: signal handlers before anything else.

For ``saynad run``, :func:`main` installs the early signal handlers
(:mod:`saynad._early_signals`) before importing the rest of saynad, then runs the
command line.
"""

from __future__ import annotations

import sys

from saynad._early_signals import install

__all__ = ["main"]


def main() -> int:
    """``saynad``: install the handlers for ``saynad run``, then run the command line."""
    if sys.argv[1:2] == ["run"]:
        install()
    from saynad.cli import main as cli_main

    return cli_main()
