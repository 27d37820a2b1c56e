"""The ``saynad`` command line.

Exit codes: 0 success, 1 a check found problems or a command failed, 2 usage error
(argparse), 78 (EX_CONFIG) the daemon refused to start on an invalid configuration.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from saynad._version import __version__
from saynad.config import DEFAULT_CONFIG_PATH, Config, load_config, summarize
from saynad.errors import ConfigError
from saynad.observability.logs import configure_logging

__all__ = ["main"]

EX_OK = 0
EX_FAILURE = 1
EX_CONFIG = 78


def _emulator(args: argparse.Namespace) -> int:
    from saynad.emulator import EmulatorOptions, Tenant, serve_emulator

    tenants = tuple(
        Tenant(id=spec.partition("=")[0], secret=spec.partition("=")[2]) for spec in args.tenant
    )
    options = EmulatorOptions(tenants=tenants, numbered=args.numbered)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            emulator = await nursery.start(
                lambda task_status: serve_emulator(
                    options, host=args.host, port=args.port, task_status=task_status
                )
            )
            print(f"saynad emulator listening on {emulator.url}", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(run)
    return EX_OK


def _load(path: str) -> Config | None:
    """Load the configuration, or print every problem (one per line) to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EX_FAILURE
    print(summarize(config))
    return EX_OK


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        # EX_CONFIG: the unit's RestartPreventExitStatus=78 stops a restart loop.
        return EX_CONFIG
    configure_logging(args.log_level or config.logging.level, config.logging.format)
    from saynad.app import run_daemon

    trio.run(run_daemon, Path(args.config), config)
    return EX_OK


def _version(args: argparse.Namespace) -> int:
    print(f"saynad {__version__}")
    return EX_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saynad", description="Supervise Sayna voice sessions; a trio-native Sayna client."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    emulator = sub.add_parser("emulator", help="run the built-in Sayna emulator on loopback")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=3001)
    emulator.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="ID=SECRET",
        help="require authentication; SECRET authenticates as tenant ID (repeatable)",
    )
    emulator.add_argument(
        "--numbered", action="store_true", help="number final transcripts per connection"
    )
    emulator.set_defaults(func=_emulator)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=DEFAULT_CONFIG_PATH,
        help=f"the YAML configuration file (default: {DEFAULT_CONFIG_PATH})",
    )
    common.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override logging.level of the configuration",
    )
    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.set_defaults(func=_run)
    check = sub.add_parser(
        "check", parents=[common], help="validate a configuration; exit 1 on problems"
    )
    check.set_defaults(func=_check)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
