"""Behaviours end to end: YAML → plan → session actor → the emulator (real sockets on
127.0.0.1, port 0), with small local HTTP servers playing the LLM, the user's agent
endpoint and the transcript collector. Deadlines are short and real; nothing sleeps a
fixed time — tests poll with a deadline."""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from saynad.actors.behaviour import SessionCounters
from saynad.actors.plan import build_plan
from saynad.actors.session import run_session
from saynad.config import SessionSpec
from saynad.emulator import Emulator, EmulatorOptions, open_emulator
from saynad.errors import ConfigError
from tests.actors.behaviours.fakes import control
from tests.actors.behaviours.servers import (
    SSE_DONE,
    Request,
    Responder,
    serve_http,
    sse,
)
from tests.support.daemon import wait_until
from tests.support.samples import session_spec, write_wav


def frames(emulator: Emulator, kind: str | None = None) -> list[dict[str, Any]]:
    decoded = [json.loads(text) for text in emulator.state.wire_log]
    return [f for f in decoded if kind is None or f["type"] == kind]


def spoken(emulator: Emulator) -> list[str]:
    return [f["text"] for f in frames(emulator, "speak")]


@asynccontextmanager
async def running(
    spec: SessionSpec, emulator: Emulator, *, flush_timeout_s: float = 5.0
) -> AsyncIterator[SessionCounters]:
    """Run the session while the block runs; drain it (and wait for its end) after."""
    counters = SessionCounters()
    plan = build_plan(spec, url=emulator.url, api_key=None)
    plan = replace(plan, counters=counters, end=replace(plan.end, flush_timeout_s=flush_timeout_s))
    ctl = control(spec.name)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_session, plan, ctl)
        yield counters
        ctl.drain_requested.set()


async def test_greeting_produces_tts_audio_and_completion(tmp_path: Path) -> None:
    spec = session_spec(
        tmp_path,
        f"""
        greeting: {{text: "Hello and welcome."}}
        audio: {{sink: {{dir: "{tmp_path}/audio/{{session}}"}}}}
        """,
    )
    async with open_emulator(EmulatorOptions(tts_chunk_ms=50)) as emulator:
        async with running(spec, emulator) as counters:
            # The sink writes a file when tts_playback_complete ends the utterance.
            await wait_until(lambda: list((tmp_path / "audio" / "e2e").glob("*.wav")))
        assert frames(emulator, "speak") == [
            {
                "type": "speak",
                "text": "Hello and welcome.",
                "flush": True,
                "allow_interruption": True,
            }
        ]
    (wav_path,) = (tmp_path / "audio" / "e2e").glob("*.wav")
    with wave.open(str(wav_path)) as wav:
        # 18 characters at 20 ms per character, 16 kHz.
        assert (wav.getframerate(), wav.getnframes()) == (16_000, 18 * 20 * 16)
    assert counters.spoken == 1


async def test_an_audio_file_becomes_transcripts_in_the_sink(tmp_path: Path) -> None:
    write_wav(tmp_path / "caller.wav", 600)
    spec = session_spec(
        tmp_path,
        """
        audio: {source: {path: caller.wav, realtime: false, chunk_ms: 100}}
        transcripts:
          - {kind: jsonl, path: "transcripts/{session}-{stream_id}.jsonl", fsync: never}
        """,
    )
    options = EmulatorOptions(script=("one two", "three four"), utterance_ms=200, interim_ms=100)
    async with open_emulator(options) as emulator, running(spec, emulator) as counters:
        await wait_until(lambda: counters.transcripts == 3)
    (path,) = (tmp_path / "transcripts").glob("e2e-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["role"], r["text"]) for r in lines] == [
        ("user", "one two"),
        ("user", "three four"),
        ("user", "one two"),
    ]
    assert {r["session"] for r in lines} == {"e2e"}
    assert path.name == f"e2e-{lines[0]['stream_id']}.jsonl"
    assert counters.sink_written == 3
    assert counters.audio_chunks_sent == 6


async def openai_spec(tmp_path: Path, server_url: str, **agent: object) -> SessionSpec:
    write_wav(tmp_path / "caller.wav", agent.pop("audio_ms", 200))  # type: ignore[arg-type]
    settings = {
        "kind": "openai",
        "model": "test-model",
        "base_url": f"{server_url}/v1",
        "api_key": "${env:LLM_KEY}",
        "system_prompt": "Be brief.",
        **agent,
    }
    return session_spec(
        tmp_path,
        f"""
        agent: {json.dumps(settings)}
        audio: {{source: {{path: caller.wav}}}}
        """,
        env={"LLM_KEY": "sk-local"},
    )


async def test_a_final_transcript_becomes_streamed_sentences_in_order(tmp_path: Path) -> None:
    async def llm(request: Request, respond: Responder) -> None:
        await respond.start(200, "text/event-stream")
        for piece in ["Sure. The weather ", "is fine", " today! Anything ", "else?"]:
            await respond.send(sse(piece))
            await trio.sleep(0.02)
        await respond.send(SSE_DONE)

    options = EmulatorOptions(script=("how is the weather",), utterance_ms=200, interim_ms=100)
    async with serve_http(llm) as server, open_emulator(options) as emulator:
        spec = await openai_spec(tmp_path, server.url)
        async with running(spec, emulator) as counters:
            await wait_until(lambda: len(spoken(emulator)) == 3)
    assert spoken(emulator) == ["Sure.", "The weather is fine today!", "Anything else?"]
    request = server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-local"
    assert request.json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "how is the weather"},
    ]
    assert request.json()["stream"] is True
    assert len(counters.first_speak_latencies_s) == 1


async def test_barge_in_sends_clear_and_cancels_the_agent_request(tmp_path: Path) -> None:
    async def llm(request: Request, respond: Responder) -> None:
        await respond.start(200, "text/event-stream")
        if request.json()["messages"][-1]["content"] == "tell me a story":
            await respond.send(sse("Once upon a time there was a very long story. "))
            await trio.sleep_forever()  # until the client goes away
        await respond.send(sse("Okay, stopping."))
        await respond.send(SSE_DONE)

    # Final 1 at 400 ms starts the reply; the interim of utterance 2 at 600 ms cuts it
    # (its 47 characters need 940 ms of speech: its first audio chunks were playing).
    options = EmulatorOptions(script=("tell me a story", "stop"), utterance_ms=400, interim_ms=200)
    async with serve_http(llm) as server, open_emulator(options) as emulator:
        spec = await openai_spec(tmp_path, server.url, audio_ms=800)
        async with running(spec, emulator) as counters:
            await wait_until(lambda: server.requests and server.requests[0].disconnected.is_set())
            await wait_until(lambda: "Okay, stopping." in spoken(emulator))
    kinds = [(f["type"], f.get("text")) for f in frames(emulator) if f["type"] != "config"]
    assert kinds == [
        ("speak", "Once upon a time there was a very long story."),
        ("clear", None),
        ("speak", "Okay, stopping."),
    ]
    assert counters.barge_ins == 1
    assert server.requests[1].json()["messages"][1:] == [
        {"role": "user", "content": "tell me a story"},
        # The caller heard the sentence begin: it is kept, marked cut.
        {
            "role": "assistant",
            "content": "Once upon a time there was a very long story. [interrupted]",
        },
        {"role": "user", "content": "stop"},
    ]


async def test_agent_timeout_speaks_the_fallback(tmp_path: Path) -> None:
    async def llm(request: Request, respond: Responder) -> None:
        await trio.sleep_forever()

    options = EmulatorOptions(script=("hello",), utterance_ms=200, interim_ms=100)
    async with serve_http(llm) as server, open_emulator(options) as emulator:
        spec = await openai_spec(
            tmp_path, server.url, timeout_s=0.3, fallback_text="Sorry, I am slow today."
        )
        async with running(spec, emulator) as counters:
            await wait_until(lambda: spoken(emulator))
            await wait_until(lambda: server.requests[0].disconnected.is_set())
    assert spoken(emulator) == ["Sorry, I am slow today."]
    assert counters.agent_failure_reasons == {"timeout": 1}


async def test_http_sink_down_keeps_its_bound_and_the_session_goes_on(tmp_path: Path) -> None:
    async def collector(request: Request, respond: Responder) -> None:
        await respond.reply(503, "down")

    write_wav(tmp_path / "caller.wav", 1000)
    async with serve_http(collector) as server:
        spec = session_spec(
            tmp_path,
            f"""
            agent: {{kind: echo, barge_in: false}}
            audio: {{source: {{path: caller.wav, realtime: false, chunk_ms: 100}}}}
            transcripts:
              - {{kind: http, url: "{server.url}/t", batch_size: 1, queue_size: 3,
                  max_retries: 1, flush_interval_s: 0.05}}
            """,
        )
        options = EmulatorOptions(utterance_ms=100, interim_ms=50, tts_ms_per_char=1)
        async with (
            open_emulator(options) as emulator,
            running(spec, emulator, flush_timeout_s=0.5) as counters,
        ):
            await wait_until(lambda: counters.replies >= 10)
            assert server.requests  # it was tried
    # Every reply was spoken although no transcript could be delivered.
    assert len(spoken(emulator)) == counters.transcripts == 10
    assert counters.sink_written == 0
    assert counters.sink_dropped == counters.transcripts + counters.replies
    assert counters.sink_errors >= 1


async def test_http_agent_reply_and_sip_transfer(tmp_path: Path) -> None:
    async def agent(request: Request, respond: Responder) -> None:
        body = request.json()
        assert body["transcript"] == "I need a human"
        answer = {"text": "Transferring you now.", "transfer_to": "+15550100"}
        await respond.reply(200, json.dumps(answer), "application/json")

    write_wav(tmp_path / "caller.wav", 200)
    options = EmulatorOptions(script=("I need a human",), utterance_ms=200, interim_ms=100)
    async with serve_http(agent) as server, open_emulator(options) as emulator:
        spec = session_spec(
            tmp_path,
            f"""
            agent: {{kind: http, url: "{server.url}/reply", headers: {{X-Token: abc}}}}
            audio: {{source: {{path: caller.wav}}}}
            """,
            extra="livekit: {room_name: 'call-{session}'}\n",
        )
        async with running(spec, emulator) as counters:
            await wait_until(lambda: "call-e2e" in emulator.state.rooms)
            emulator.state.join("call-e2e", "caller", kind="SIP")
            await wait_until(lambda: emulator.state.transfers)
    assert list(emulator.state.transfers) == [
        {
            "room_name": "call-e2e",
            "participant_identity": "caller",
            "transfer_to": "tel:+15550100",
        }
    ]
    assert [f["type"] for f in frames(emulator) if f["type"] != "config"] == [
        "speak",
        "sip_transfer",
    ]
    assert server.requests[0].headers["x-token"] == "abc"
    assert counters.transfers == 1


async def test_python_agent_loads_and_answers(tmp_path: Path) -> None:
    write_wav(tmp_path / "caller.wav", 200)
    spec = session_spec(
        tmp_path,
        """
        agent: {kind: python, function: "tests.actors.behaviours.agent_module:reply"}
        audio: {source: {path: caller.wav}}
        """,
    )
    options = EmulatorOptions(script=("one two three",), utterance_ms=200, interim_ms=100)
    async with open_emulator(options) as emulator, running(spec, emulator):
        await wait_until(lambda: len(spoken(emulator)) == 2)
    assert spoken(emulator) == ["Python heard 3 words.", "That is turn 1."]


def test_a_missing_python_module_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        session_spec(tmp_path, 'agent: {kind: python, function: "saynad_missing_agent:reply"}\n')
    (problem,) = caught.value.problems
    assert "behaviours.agent.function: cannot import module 'saynad_missing_agent'" in problem
