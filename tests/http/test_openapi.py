"""The API described once: the served OpenAPI document, docs/openapi.json, the routes."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from openapi_spec_validator import validate

from saynad.actors.registry import SessionState
from saynad.api import ROUTES, openapi_document
from saynad.cli import main
from tests.support.daemon import running_daemon, states, wait_until
from tests.support.samples import OPERATOR_TOKEN, READER_TOKEN

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_document_is_valid_openapi() -> None:
    validate(openapi_document())  # type: ignore[arg-type]


def test_docs_keep_a_copy_of_the_document() -> None:
    kept = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert kept == openapi_document(), (
        "docs/openapi.json is out of date: saynad openapi > docs/openapi.json"
    )


def test_the_command_line_prints_the_document(capsys: object) -> None:
    assert main(["openapi"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert json.loads(out) == openapi_document()
    assert out == DOCUMENT.read_text(encoding="utf-8")


def test_every_route_names_its_scope_and_refusals() -> None:
    paths = openapi_document()["paths"]
    for route in ROUTES:
        op = paths[route.path][route.method]
        assert op["x-saynad-scope"] == route.scope
        assert {"401", "403"} <= set(op["responses"])
    calls = paths["/v1/calls"]["post"]
    assert "503" in calls["responses"]
    assert "Retry-After" in calls["responses"]["503"]["headers"]
    assert any(p["name"] == "Idempotency-Key" for p in calls["parameters"])
    schema = openapi_document()["components"]["schemas"]["CallRequest"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"template", "to_phone_number"}


async def test_the_daemon_serves_the_document(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api=True, sessions=()) as (_daemon, client):
        response = await client.get("/v1/openapi.json")  # no token needed
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == openapi_document()
        assert (await client.post("/v1/openapi.json")).status_code == 405


async def test_call_say_and_hangup_on_the_command_line(tmp_path: Path, capsys: object) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    async with running_daemon(tmp_path, api=True, sessions=()) as (daemon, _client):
        url = daemon.http_urls[0]
        common = ["--url", url, "--token-file", str(token_file)]

        def cli(*argv: str) -> int:
            return main([*argv[:1], *common, *argv[1:]])

        code = await trio.to_thread.run_sync(
            cli, "call", "+15551234567", "--template", "call", "--idempotency-key", "cli-1"
        )
        assert code == 0
        out = capsys.readouterr().out  # type: ignore[attr-defined]
        # (The in-process daemon logs to the same stdout.)
        name = next(line for line in out.splitlines() if line.startswith("call-"))
        await wait_until(lambda: states(daemon).get(name) is SessionState.READY)
        assert await trio.to_thread.run_sync(cli, "say", name, "hello there") == 0
        assert daemon.emulator is not None
        wire = daemon.emulator.state.wire_log
        await wait_until(lambda: any('"hello there"' in frame for frame in wire))
        assert await trio.to_thread.run_sync(cli, "hangup", name, "--text", "so long") == 0
        await wait_until(lambda: daemon.registry.get(name) is None)
        assert any('"so long"' in frame for frame in wire)
        # Refusals say why on stderr and exit 1.
        assert await trio.to_thread.run_sync(cli, "say", name, "anyone?") == 1
        assert "404 not_found" in capsys.readouterr().err  # type: ignore[attr-defined]
        assert await trio.to_thread.run_sync(cli, "call", "555 1234", "--template", "call") == 1
        assert "422 invalid" in capsys.readouterr().err  # type: ignore[attr-defined]
        token_file.write_text(READER_TOKEN)
        assert await trio.to_thread.run_sync(cli, "call", "+1555", "--template", "call") == 1
        assert "403 forbidden" in capsys.readouterr().err  # type: ignore[attr-defined]
