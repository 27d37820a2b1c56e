"""The ``saynad`` command line.

Exit codes: 0 success, 1 a check found problems or a command failed, 2 usage error
(argparse), 69 (EX_UNAVAILABLE) the daemon could not listen on ``http.listen``,
78 (EX_CONFIG) the daemon refused to start on an invalid configuration.

Without ``--config``, ``run`` and ``check`` use ``/etc/saynad/saynad.yaml`` when it
exists, else the embedded demo shipped in the package, and say which on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from saynad._version import __version__
from saynad.config import DEFAULT_CONFIG_PATH, Config, load_config, summarize
from saynad.errors import ConfigError
from saynad.observability.logs import configure_logging, errors_to_journal
from saynad.sharding import MAX_SHARDS, SHARD_ENV, Shard, owner, shard_override
from saynad.shipped import (
    DEMO_CONFIG,
    ShippedFileError,
    example_file,
    example_names,
    example_summary,
    read_shipped,
    shipped_files,
    shipped_path,
)

__all__ = ["main"]

EX_OK = 0
EX_FAILURE = 1
EX_CONFIG = 78


def _emulator(args: argparse.Namespace) -> int:
    from saynad.emulator import EmulatorOptions, Tenant, serve_emulator

    tenants = tuple(
        Tenant(id=spec.partition("=")[0], secret=spec.partition("=")[2]) for spec in args.tenant
    )
    options = EmulatorOptions(
        tenants=tenants,
        numbered=args.numbered,
        utterance_ms=args.utterance_ms,
        interim_ms=args.interim_ms,
    )

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


def default_config(system: str = DEFAULT_CONFIG_PATH) -> tuple[Path, str]:
    """The file ``run`` and ``check`` use without ``--config``, and why.

    ``system`` when it exists (even if unreadable: that is an error to report, not a
    reason to run something else), else the embedded demo.
    """
    if os.path.lexists(system):
        return Path(system), "the system configuration"
    return shipped_path(DEMO_CONFIG), f"the embedded demo: {system} does not exist"


def _config_path(args: argparse.Namespace) -> str:
    """``--config``, or the default (named on stderr so nobody guesses which file ran)."""
    if args.config is not None:
        return str(args.config)
    path, why = default_config()
    print(f"saynad: using {path} ({why})", file=sys.stderr, flush=True)
    return str(path)


def _load(path: str) -> Config | None:
    """Load the configuration, or print every problem (one per line) to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _shard(
    args: argparse.Namespace, config: Config
) -> tuple[Shard, tuple[int, int | None] | None, str] | None:
    """This process's shard: ``--shard``, else ``SAYNAD_SHARD``, else the file's
    ``sharding``; with the override (what the daemon keeps across reloads) and where it
    came from. None after printing why it is invalid."""
    try:
        found = shard_override(args.shard, os.environ)
    except ValueError as exc:
        print(f"saynad: {exc}", file=sys.stderr)
        return None
    override, source = found if found is not None else (None, "sharding")
    index, count = override or (None, None)
    try:
        return config.shard(index, count), override, source
    except ValueError as exc:
        where = source if count is not None else f"{source} with sharding.count of the file"
        print(f"saynad: {where}: {exc}", file=sys.stderr)
        return None


def format_placement(config: Config, shard: Shard, source: str) -> str:
    """What ``saynad check`` says of the shard: which always-on sessions it runs."""
    names = [spec.name for spec in config.sessions]
    mine = [name for name in names if shard.owns(name)]
    line = f"  shard:     {shard} (from {source}): runs {len(mine)} of {len(names)} always-on"
    if shard.sharded:
        line += ": " + (", ".join(mine) or "none")
    return line


def _check(args: argparse.Namespace) -> int:
    config = _load(_config_path(args))
    if config is None:
        return EX_FAILURE
    placed = _shard(args, config)
    if placed is None:
        return EX_FAILURE
    print(summarize(config))
    print(format_placement(config, placed[0], placed[2]))
    return EX_OK


def _run(args: argparse.Namespace) -> int:
    errors_to_journal()
    path = _config_path(args)
    config = _load(path)
    if config is None:
        # EX_CONFIG: the unit's RestartPreventExitStatus=78 stops a restart loop.
        return EX_CONFIG
    placed = _shard(args, config)
    if placed is None:
        return EX_CONFIG
    configure_logging(args.log_level or config.logging.level, config.logging.format)
    from saynad.app import run_daemon

    code: int = trio.run(
        functools.partial(run_daemon, Path(path), config, shard_override=placed[1])
    )
    return code


def format_shards(names: Sequence[str], count: int, previous: int | None = None) -> str:
    """The ``saynad shards`` table: every always-on session with the shard that runs it
    (and, with ``previous``, the shard that ran it with that many shards), then the
    sessions per shard."""
    table = [("SESSION", "SHARD") + (("WAS", "") if previous is not None else ())]
    moved = 0
    for name in names:
        now = owner(name, count)
        row: tuple[str, ...] = (name, str(now))
        if previous is not None:
            before = owner(name, previous)
            moved += before != now
            row += (str(before), "moves" if before != now else "")
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    per_shard = [0] * count
    for name in names:
        per_shard[owner(name, count)] += 1
    lines.append("")
    lines.append(
        f"{len(names)} always-on sessions on {count} shards: "
        + ", ".join(f"{index}: {n}" for index, n in enumerate(per_shard))
    )
    if previous is not None:
        lines.append(f"{moved} of {len(names)} move going from {previous} to {count} shards")
    return "\n".join(lines)


def _shards(args: argparse.Namespace) -> int:
    config = _load(_config_path(args))
    if config is None:
        return EX_FAILURE
    count = config.sharding.count if args.count is None else args.count
    for value in (count, args.previous):
        if value is not None and not 1 <= value <= MAX_SHARDS:
            print(f"saynad shards: a shard count is 1 to {MAX_SHARDS}", file=sys.stderr)
            return EX_FAILURE
    print(format_shards([spec.name for spec in config.sessions], count, args.previous))
    return EX_OK


DEFAULT_URL = "http://127.0.0.1:9464"


def _age(since: float, now: float) -> str:
    seconds = max(0, int(now - since))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def format_sessions(rows: list[dict[str, Any]], *, now: float | None = None) -> str:
    """The ``saynad status`` table: one line per session, aligned columns."""
    current = time.time() if now is None else now
    header = ("NAME", "ORIGIN", "TEMPLATE", "STATE", "FOR", "RESTARTS", "ROOM", "STREAM", "ERROR")
    table = [header]
    for row in rows:
        error = row.get("last_error") or ""
        table.append(
            (
                str(row.get("name", "")),
                str(row.get("origin", "")),
                str(row.get("template", "")),
                str(row.get("state", "")),
                _age(float(row.get("since") or current), current),
                str(row.get("restarts", 0)),
                str(row.get("room") or "-"),
                str(row.get("stream_id") or "-"),
                error if len(error) <= 60 else error[:57] + "...",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def _status(args: argparse.Namespace) -> int:
    import httpx

    url = args.url.rstrip("/")
    token = _api_token(args)
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    try:
        response = httpx.get(f"{url}/sessions", headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"saynad status: cannot reach {url}: {exc}", file=sys.stderr)
        return EX_FAILURE
    if response.status_code != 200:
        print(f"saynad status: {url}/sessions answered {response.status_code}", file=sys.stderr)
        return EX_FAILURE
    body = response.json()
    rows = body.get("sessions", [])
    if args.json:
        print(json.dumps(rows, indent=2))
        return EX_OK
    print(format_sessions(rows))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no sessions"
    print(f"\n{len(rows)} sessions{_on_shard(body.get('shard'))}: {summary}")
    return EX_OK


def _on_shard(shard: object) -> str:
    """`` on shard I of N`` for a shard of a sharded fleet (which lists only its own
    sessions), else nothing."""
    if not isinstance(shard, dict):
        return ""
    index, count = shard.get("index"), shard.get("count")
    if not isinstance(index, int) or not isinstance(count, int) or count <= 1:
        return ""
    return f" on shard {index} of {count}"


# --------------------------------------------------------------------------- the API


def _api_token(args: argparse.Namespace) -> str | None:
    """The bearer token: ``--token-file``, else ``$SAYNAD_TOKEN`` (never an argument,
    which every user of the machine could read in the process list)."""
    if args.token_file is not None:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SystemExit(f"saynad: cannot read --token-file: {exc.strerror}") from None
    return os.environ.get("SAYNAD_TOKEN") or None


def _api_call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request to the daemon's API: (status, JSON body); status 0 when unreachable."""
    import httpx

    sent = dict(headers or {})
    token = _api_token(args)
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    url = args.url.rstrip("/")
    try:
        response = httpx.request(
            method, f"{url}{path}", json=body, headers=sent, timeout=args.timeout
        )
    except httpx.HTTPError as exc:
        print(f"saynad: cannot reach {url}: {exc}", file=sys.stderr)
        return 0, {}
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    return response.status_code, answer if isinstance(answer, dict) else {}


def _api_refused(command: str, status: int, answer: dict[str, Any]) -> int:
    if status:
        detail = answer.get("detail")
        error = answer.get("error", f"HTTP {status}")
        print(
            f"saynad {command}: {status} {error}" + (f": {detail}" if detail else ""),
            file=sys.stderr,
        )
    return EX_FAILURE


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"saynad: --var takes NAME=VALUE, got {pair!r}")
        variables[name] = value
    return variables


def _call(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"template": args.template, "to_phone_number": args.to}
    if args.caller is not None:
        body["from_phone_number"] = args.caller
    if args.room is not None:
        body["room"] = args.room
    if args.var:
        body["variables"] = _variables(args.var)
    headers = {"idempotency-key": args.idempotency_key} if args.idempotency_key else {}
    status, answer = _api_call(args, "POST", "/v1/calls", body, headers)
    if status != 202:
        return _api_refused("call", status, answer)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(answer["session"])
    return EX_OK


def _say(args: argparse.Namespace) -> int:
    body = {"text": args.text, "interrupt": args.interrupt}
    status, answer = _api_call(args, "POST", f"/v1/sessions/{_segment(args.session)}/speak", body)
    return EX_OK if status == 202 else _api_refused("say", status, answer)


def _hangup(args: argparse.Namespace) -> int:
    session = _segment(args.session)
    if args.now:
        status, answer = _api_call(args, "DELETE", f"/v1/sessions/{session}")
    else:
        body = {"text": args.text} if args.text is not None else {}
        status, answer = _api_call(args, "POST", f"/v1/sessions/{session}/hangup", body)
    return EX_OK if status == 202 else _api_refused("hangup", status, answer)


def _segment(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _openapi(args: argparse.Namespace) -> int:
    from saynad.api import openapi_document

    print(json.dumps(openapi_document(), indent=2))
    return EX_OK


def _sign_webhook(args: argparse.Namespace) -> int:
    from saynad.protocol.webhooks import (
        SipWebhook,
        WebhookParticipant,
        WebhookRoom,
        encode_webhook_payload,
        sign_webhook,
    )

    secret = args.secret or os.environ.get("SAYNA_WEBHOOK_SECRET", "")
    if not secret.strip():
        print("saynad sign-webhook: give --secret or set SAYNA_WEBHOOK_SECRET", file=sys.stderr)
        return EX_FAILURE
    caller = args.caller
    payload = SipWebhook(
        participant=WebhookParticipant(
            name=args.participant_name,
            identity=f"sip_{caller}",
            sid="PA_" + secrets.token_hex(6),
        ),
        room=WebhookRoom(name=args.room, sid="RM_" + secrets.token_hex(6)),
        from_phone_number=caller,
        to_phone_number=args.callee,
        room_prefix=args.room_prefix,
        sip_host=args.sip_host,
        sip_headers={"to": f"sip:{args.callee}@{args.sip_host}", "x-to-ip": args.sip_host},
    )
    body = encode_webhook_payload(payload)
    event_id = args.event_id or "EV_" + secrets.token_hex(8)
    timestamp = int(time.time()) if args.timestamp is None else args.timestamp
    headers = sign_webhook(secret, body, timestamp=timestamp, event_id=event_id)
    if args.curl:
        parts = ["curl", "-sS", "-i", "-X", "POST", args.url]
        for name, value in headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts += ["--data-binary", body.decode()]
        print(" ".join(shlex.quote(part) for part in parts))
    else:
        for name, value in headers.items():
            print(f"{name}: {value}")
        print()
        print(body.decode())
    return EX_OK


def _version(args: argparse.Namespace) -> int:
    print(f"saynad {__version__}")
    return EX_OK


def _print_shipped(name: str) -> int:
    try:
        data = read_shipped(name)
    except ShippedFileError as exc:
        print(f"saynad: {exc}", file=sys.stderr)
        return EX_FAILURE
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return EX_OK


def _config_example(args: argparse.Namespace) -> int:
    if args.name is None:
        names = example_names()
        width = max(len(name) for name in names)
        for name in names:
            print(f"{name.ljust(width)}  {example_summary(name)}")
        return EX_OK
    try:
        name = example_file(args.name)
    except ShippedFileError as exc:
        print(f"saynad: {exc}", file=sys.stderr)
        return EX_FAILURE
    return _print_shipped(name)


def _config_path_command(args: argparse.Namespace) -> int:
    path, why = default_config()
    print(f"{path}\t{why}")
    return EX_OK


def _files(args: argparse.Namespace) -> int:
    if args.name is None:
        for name in shipped_files():
            print(name)
        return EX_OK
    if args.path:
        try:
            print(shipped_path(args.name))
        except ShippedFileError as exc:
            print(f"saynad: {exc}", file=sys.stderr)
            return EX_FAILURE
        return EX_OK
    return _print_shipped(args.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saynad", description="Supervise Sayna voice sessions; a trio-native Sayna client."
    )
    parser.add_argument("--version", action="version", version=f"saynad {__version__}")
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
    emulator.add_argument(
        "--utterance-ms",
        type=int,
        default=1000,
        metavar="MS",
        help="one final transcript per MS of received audio (default: 1000)",
    )
    emulator.add_argument(
        "--interim-ms",
        type=int,
        default=500,
        metavar="MS",
        help="one interim transcript per MS of audio; >= --utterance-ms: none (default: 500)",
    )
    emulator.set_defaults(func=_emulator)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=None,
        help=f"the YAML configuration file (default: {DEFAULT_CONFIG_PATH} if it exists, "
        "else the embedded demo; stderr names the file used)",
    )
    common.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override logging.level of the configuration",
    )
    sharded = argparse.ArgumentParser(add_help=False)
    sharded.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help=f"run as shard I of N: only the always-on sessions hashing to I (overrides "
        f"${SHARD_ENV}, which overrides the file's sharding; I alone takes N from "
        "sharding.count)",
    )
    run = sub.add_parser("run", parents=[common, sharded], help="run the daemon")
    run.set_defaults(func=_run)
    check = sub.add_parser(
        "check",
        parents=[common, sharded],
        help="validate a configuration (and show the shard's sessions); exit 1 on problems",
    )
    check.set_defaults(func=_check)
    shards = sub.add_parser(
        "shards",
        parents=[common],
        help="print which shard runs each always-on session",
        description="The whole table of a sharded fleet: every always-on session of the "
        "file with the shard that runs it (rendezvous hashing of its name).",
    )
    shards.add_argument(
        "--count", type=int, default=None, help="the number of shards (default: sharding.count)"
    )
    shards.add_argument(
        "--previous",
        type=int,
        default=None,
        metavar="M",
        help="also show where each session ran with M shards, and which move",
    )
    shards.set_defaults(func=_shards)

    api = argparse.ArgumentParser(add_help=False)
    api.add_argument(
        "--url", default=DEFAULT_URL, help=f"the daemon's HTTP address (default: {DEFAULT_URL})"
    )
    api.add_argument(
        "--token-file",
        metavar="PATH",
        help="a file holding the API token (default: $SAYNAD_TOKEN)",
    )
    api.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")

    status = sub.add_parser(
        "status",
        parents=[api],
        help="show the running daemon's sessions (a read token once http.tokens is set)",
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON rows")
    status.set_defaults(func=_status)

    call = sub.add_parser(
        "call",
        parents=[api],
        help="place an outbound call (POST /v1/calls); prints the session's name",
        description="Dial NUMBER with an outbound template: saynad call +15551234567 "
        "--template reminder --var name=Ada. Needs a token with the calls scope.",
    )
    call.add_argument("to", metavar="NUMBER", help="the number to dial (+15551234567)")
    call.add_argument("--template", required=True, help="a template marked outbound: true")
    call.add_argument(
        "--from", dest="caller", help="caller id (default: outbound.from_phone_number)"
    )
    call.add_argument("--room", help="the LiveKit room (default: the session's name)")
    call.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="a template variable"
    )
    call.add_argument(
        "--idempotency-key", help="retrying with the same key never places a second call"
    )
    call.add_argument("--json", action="store_true", help="print the whole answer")
    call.set_defaults(func=_call)

    say = sub.add_parser(
        "say",
        parents=[api],
        help="make a running session say something (POST /v1/sessions/NAME/speak)",
    )
    say.add_argument("session", metavar="SESSION")
    say.add_argument("text", metavar="TEXT")
    say.add_argument(
        "--interrupt", action="store_true", help="cut what the session is saying first"
    )
    say.set_defaults(func=_say)

    hangup = sub.add_parser(
        "hangup",
        parents=[api],
        help="end a call: its goodbye line, then the end (--now: at once)",
    )
    hangup.add_argument("session", metavar="SESSION")
    hangup.add_argument("--text", help='the goodbye line ("" for none)')
    hangup.add_argument(
        "--now", action="store_true", help="end at once, no goodbye (DELETE /v1/sessions/NAME)"
    )
    hangup.set_defaults(func=_hangup)

    openapi = sub.add_parser(
        "openapi", help="print the API's OpenAPI document (what /v1/openapi.json serves)"
    )
    openapi.set_defaults(func=_openapi)

    sign = sub.add_parser(
        "sign-webhook",
        help="print a signed test SIP webhook (headers and body, or a curl command)",
        description="Build a SIP webhook as Sayna sends it, signed with --secret, to test "
        "a deployment end to end: saynad sign-webhook --secret ... --room sip-test --curl | sh",
    )
    sign.add_argument(
        "--secret", help="the webhook secret (default: $SAYNA_WEBHOOK_SECRET)", default=None
    )
    sign.add_argument("--room", required=True, help="the LiveKit room the call is in")
    sign.add_argument("--from", dest="caller", default="+15551230001", help="caller number")
    sign.add_argument("--to", dest="callee", default="+15551230002", help="called number")
    sign.add_argument("--sip-host", default="sip.example.com")
    sign.add_argument("--room-prefix", default="sip-")
    sign.add_argument("--participant-name", default="Test caller")
    sign.add_argument("--event-id", help="X-Sayna-Event-Id (default: a random EV_ id)")
    sign.add_argument("--timestamp", type=int, help="X-Sayna-Timestamp (default: now)")
    sign.add_argument(
        "--url",
        default=f"{DEFAULT_URL}/webhooks/sip",
        help=f"where --curl posts it (default: {DEFAULT_URL}/webhooks/sip)",
    )
    sign.add_argument("--curl", action="store_true", help="print a ready curl command line")
    sign.set_defaults(func=_sign_webhook)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)

    config = sub.add_parser("config", help="the shipped example configurations")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    example = config_sub.add_parser(
        "example",
        help="list the shipped examples, or print one",
        description="Without NAME: the shipped example configurations, one a line. With "
        "NAME: print it (saynad config example demo > /etc/saynad/saynad.yaml).",
    )
    example.add_argument("name", nargs="?", metavar="NAME")
    example.set_defaults(func=_config_example)
    default = config_sub.add_parser(
        "path", help="the file run and check use without --config, and why"
    )
    default.set_defaults(func=_config_path_command)

    files = sub.add_parser(
        "files",
        help="list the files shipped with saynad (unit, examples, Prometheus, Grafana), "
        "or print one",
        description="Without NAME: every file shipped inside the package. With NAME: print "
        "it (saynad files systemd/saynad.service), or with --path where it is on disk.",
    )
    files.add_argument("name", nargs="?", metavar="NAME")
    files.add_argument("--path", action="store_true", help="print the file's path on disk")
    files.set_defaults(func=_files)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (saynad status | head -1): stop quietly. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EX_FAILURE
    return result


if __name__ == "__main__":
    sys.exit(main())
