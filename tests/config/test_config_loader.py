"""The loader: YAML details, locations, merging, checks across sections, the wire types."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from saynad.app import emulator_options
from saynad.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    EchoAgentSettings,
    HttpAgentSettings,
    JsonlSinkSettings,
    Secret,
    load_config,
    load_config_text,
    render_placeholders,
    summarize,
)
from saynad.errors import ConfigError
from saynad.protocol.messages import ApiKeyAuth, AzureAuth, GoogleAuth, encode_client_frame

DATA_WAV = str(Path(__file__).resolve().parents[2] / "saynad" / "data" / "demo-caller.wav")

VOICE = """\
templates:
  voice:
    stt: &stt
      provider: deepgram
      language: en-US
      sample_rate: 16000
      channels: 1
      punctuation: true
      encoding: linear16
      model: nova-3
    tts: &tts
      provider: deepgram
      model: aura-2
      voice_id: aura-asteria-en
"""


def load(text: str, **kwargs: Any) -> Config:
    return load_config_text(textwrap.dedent(text), source_name="test.yaml", **kwargs)


def problems(text: str, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, **kwargs)
    return info.value.problems


def test_default_path_constant() -> None:
    assert DEFAULT_CONFIG_PATH == "/etc/saynad/saynad.yaml"


def test_an_empty_mapping_is_a_valid_configuration() -> None:
    config = load("{}")
    assert config.sayna.embedded
    assert config.http.host == "127.0.0.1"
    assert config.http.port == 9464
    assert config.logging.level == "info"
    assert config.logging.format == "auto"
    assert config.defaults.restart == "permanent"
    assert config.defaults.backoff.initial_s == 0.5
    assert config.sessions == ()
    assert config.inbound.sip_webhook is None


# ------------------------------------------------------------------ YAML and locations


def test_duplicate_keys_are_refused_with_the_line_of_the_second() -> None:
    found = problems(
        """\
        logging:
          level: info
        http:
          listen: "127.0.0.1:1"
        logging:
          format: json
        """
    )
    assert found == ["test.yaml:5: logging: duplicate key 'logging' (first defined at line 1)"]


def test_duplicate_keys_do_not_stop_other_problems() -> None:
    found = problems(
        """\
        http:
          listen: "127.0.0.1:1"
          listen: "127.0.0.1:2"
        logging:
          level: loud
        """
    )
    assert [p.split(": ")[1] for p in found] == ["http.listen", "logging.level"]


def test_problems_are_sorted_by_line_and_formatted() -> None:
    found = problems(
        VOICE
        + """\
sessions:
  - name: a
    template: nope
  - name: b
    template: voice
    restart: never
logging:
  level: loud
"""
    )
    assert found == [
        "test.yaml:17: sessions[0].template: unknown template 'nope' (known: voice)",
        "test.yaml:20: sessions[1].restart: expected one of: permanent, transient, temporary, "
        "got 'never'",
        "test.yaml:22: logging.level: expected one of: debug, info, warning, error, got 'loud'",
    ]


def test_anchors_aliases_and_merge_keys() -> None:
    config = load(
        VOICE
        + """\
  french:
    stt:
      <<: *stt
      language: fr-FR
    tts: *tts
sessions:
  - {name: en, template: voice}
  - {name: fr, template: french}
"""
    )
    en, fr = config.sessions
    assert en.stt is not None
    assert fr.stt is not None
    assert (en.stt.language, fr.stt.language) == ("en-US", "fr-FR")
    assert fr.stt.model == "nova-3"
    assert en.tts == fr.tts


def test_a_key_repeated_after_a_merge_overrides_it_but_repeating_it_twice_is_refused() -> None:
    found = problems(
        """\
        base: &base {level: info}
        logging:
          <<: *base
          level: debug
          level: error
        """
    )
    assert "test.yaml:5: logging.level: duplicate key 'level' (first defined at line 4)" in found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [*a]\n", "recursive YAML alias"),
        ("sessions: !!set {a, b}\n", "unsupported YAML tag"),
        ("logging: !!python/object:os.system {}\n", "unsupported YAML tag"),
        ("logging:\n  level: !custom info\n", "invalid YAML value"),
        ("logging:\n  1: info\n", "mapping keys must be strings, got 1 (quote it)"),
        ("logging:\n  [a]: info\n", "mapping keys must be plain strings"),
        (
            "logging: {}\n---\nhttp: {}\n",
            "2: invalid YAML: expected a single document in the stream (line 1), but found "
            "another document",
        ),
        ("logging:\n  level: 2001-13-45\n", "invalid YAML value"),
        ("logging:\n\tlevel: info\n", "invalid YAML"),
    ],
)
def test_yaml_oddities_are_problems_not_crashes(text: str, message: str) -> None:
    found = problems(text)
    assert any(message in p for p in found), found
    assert all(p.startswith("test.yaml:") for p in found)


def test_an_empty_document_is_a_problem() -> None:
    assert problems("# nothing here\n") == [
        "test.yaml:1: the file is empty; expected a mapping of sections"
    ]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.problems == [f"{missing}: cannot read the file: No such file or directory"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"logging:\n  level: info\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(latin)
    assert info.value.problems == [f"{latin}:3: the file is not UTF-8 text"]


# ------------------------------------------------------------------ sections


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("0.0.0.0:1", "0.0.0.0", 1),
        ("localhost:65535", "localhost", 65535),
        ("127.0.0.1:0", "127.0.0.1", 0),  # any free port, read back once bound
        ("[::1]:9464", "::1", 9464),
        ("[::]:80", "::", 80),
    ],
)
def test_listen_addresses(listen: str, host: str, port: int) -> None:
    config = load(f'http:\n  listen: "{listen}"\n')
    assert (config.http.host, config.http.port) == (host, port)


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:65536", "the port must be from 0 to 65535 (0: any free port), got 65536"),
        ("127.0.0.1:port", "the port must be a number from 0 to 65535"),
        ("[::1]", "expected host:port"),
        ("[nope]:1", "'nope' is not an IPv6 address"),
        (":9464", "expected host:port"),
        ("my host:1", "is not a host name or IPv4 address"),
    ],
)
def test_bad_listen_addresses(listen: str, message: str) -> None:
    [problem] = problems(f'http:\n  listen: "{listen}"\n')
    assert problem.startswith("test.yaml:2: http.listen: ")
    assert message in problem


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3001", "https://sayna.example.com", "ws://h/ws", "wss://h:443/ws"]
)
def test_sayna_urls(url: str) -> None:
    config = load(f"sayna:\n  url: {url}\n")
    assert config.sayna.url == url
    assert not config.sayna.embedded


@pytest.mark.parametrize("url", ["ftp://h", "sayna.example.com", "http://", "http://h:99999"])
def test_bad_sayna_urls(url: str) -> None:
    [problem] = problems(f"sayna:\n  url: '{url}'\n")
    assert problem.startswith("test.yaml:2: sayna.url: ")


def test_emulator_options_map_onto_the_emulator() -> None:
    config = load(
        """\
        sayna:
          api_key: ${env:KEY}
          emulator:
            script: [one, two]
            numbered: true
            utterance_ms: 200
        """,
        env={"KEY": "emulator-key"},
    )
    options = emulator_options(config.sayna)
    assert options.script == ("one", "two")
    assert options.numbered
    assert options.utterance_ms == 200
    assert options.auth_required
    assert options.tenants[0].secret == "emulator-key"
    assert options.interim_ms == 500  # unset options keep the emulator's defaults


def test_defaults_flow_into_templates_and_sessions() -> None:
    config = load(
        VOICE
        + """\
    backoff: {max_s: 5}
    ready_timeout_s: 20
defaults:
  restart: transient
  backoff: {initial_s: 1, multiplier: 3}
  drain_timeout_s: 7
sessions:
  - name: a
    template: voice
  - name: b
    template: voice
    restart: temporary
    backoff: {initial_s: 2}
    ready_timeout_s: 5
"""
    )
    a, b = (spec.policy for spec in config.sessions)
    assert a.restart == "transient"
    assert b.restart == "temporary"
    assert (a.backoff.initial_s, a.backoff.max_s, a.backoff.multiplier) == (1.0, 5.0, 3.0)
    assert (b.backoff.initial_s, b.backoff.max_s, b.backoff.multiplier) == (2.0, 5.0, 3.0)
    assert (a.ready_timeout_s, b.ready_timeout_s) == (20.0, 5.0)
    assert a.drain_timeout_s == b.drain_timeout_s == 7.0
    assert a.connect_timeout_s == 10.0
    assert a.keepalive.interval_s == 15.0


def test_session_overrides_merge_key_by_key() -> None:
    config = load(
        VOICE
        + f"""\
    stream_id: "call-{{session}}"
    behaviours:
      greeting: {{text: Hello}}
      agent: {{kind: echo}}
      audio:
        source: {{path: {DATA_WAV}}}
sessions:
  - name: plain
    template: voice
  - name: tuned
    template: voice
    stream_id: fixed-id
    tts: {{voice_id: aura-luna-en, speaking_rate: 1.2}}
    behaviours:
      greeting: null
      transcripts:
        - {{kind: jsonl, path: "t/{{session}}.jsonl"}}
"""
    )
    plain, tuned = config.sessions
    assert plain.stream_id == "call-plain"
    assert tuned.stream_id == "fixed-id"
    assert plain.tts is not None
    assert tuned.tts is not None
    assert (plain.tts.voice_id, tuned.tts.voice_id) == ("aura-asteria-en", "aura-luna-en")
    assert tuned.tts.model == "aura-2"
    assert tuned.tts.speaking_rate == 1.2
    assert plain.behaviours.greeting is not None
    assert tuned.behaviours.greeting is None
    assert isinstance(tuned.behaviours.agent, EchoAgentSettings)
    assert tuned.behaviours.audio == plain.behaviours.audio
    assert plain.behaviours.transcripts == ()
    [sink] = tuned.behaviours.transcripts
    assert isinstance(sink, JsonlSinkSettings)
    assert sink.path == str(Path.cwd() / "t" / "{session}.jsonl")


def test_relative_paths_start_at_the_config_files_directory(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    clip = tmp_path / "clips" / "caller.wav"
    clip.write_bytes(Path(DATA_WAV).read_bytes())
    path = tmp_path / "saynad.yaml"
    path.write_text(
        VOICE
        + """\
    behaviours:
      audio:
        source: {path: clips/caller.wav}
        sink: {dir: "out/{session}"}
sessions: [{name: a, template: voice}]
"""
    )
    [spec] = load_config(path, env={}).sessions
    assert spec.behaviours.audio is not None
    assert spec.behaviours.audio.source is not None
    assert spec.behaviours.audio.sink is not None
    assert spec.behaviours.audio.source.path == str(clip)
    assert spec.behaviours.audio.sink.dir == str(tmp_path / "out" / "{session}")


def test_disabled_sessions_are_checked_but_not_run() -> None:
    config = load(
        """\
        templates:
          room: {audio: false, livekit: {}}
        sessions:
          - {name: a, template: room, livekit: {room_name: shared}}
          - {name: b, template: room, livekit: {room_name: shared}, enabled: false}
        """
    )
    assert [s.name for s in config.sessions] == ["a"]
    assert config.disabled_sessions == ("b",)
    found = problems(
        """\
        templates:
          room: {audio: false, livekit: {}}
        sessions:
          - {name: b, template: room, enabled: false, restart: sometimes}
        """
    )
    assert found == [
        "test.yaml:4: sessions[0].restart: expected one of: permanent, transient, temporary, "
        "got 'sometimes'"
    ]


def test_room_names_use_the_session_placeholder_and_must_differ() -> None:
    config = load(
        """\
        templates:
          room: {audio: false, livekit: {room_name: "room-{session}"}}
        sessions:
          - {name: a, template: room}
          - {name: b, template: room}
        """
    )
    assert [s.livekit.room_name for s in config.sessions if s.livekit] == ["room-a", "room-b"]
    found = problems(
        """\
        templates:
          room: {audio: false, livekit: {room_name: fixed}}
        sessions:
          - {name: a, template: room}
          - {name: b, template: room}
        """
    )
    assert found == [
        "test.yaml:5: sessions[1]: LiveKit room 'fixed' is already used by session 'a' "
        "(sessions[0]); the server deletes a room when its session ends, so each session "
        "needs its own room"
    ]


def test_template_problems_are_reported_once_at_the_template() -> None:
    found = problems(
        """\
        templates:
          t:
            tts: {provider: deepgram, model: aura-2}
        sessions:
          - {name: a, template: t}
          - {name: b, template: t}
        """
    )
    assert found == [
        "test.yaml:2: templates.t.stt: required when audio is true (the default); "
        "set stt or audio: false"
    ]


def test_a_session_override_problem_is_reported_at_the_session() -> None:
    found = problems(
        VOICE
        + """\
sessions:
  - name: a
    template: voice
    stt: {provider: azur}
  - name: b
    template: voice
    stt: {provider: azure}
"""
    )
    assert found == [
        "test.yaml:18: sessions[0].stt.provider: unknown provider 'azur' (expected one of: "
        "azure, cartesia, deepgram, elevenlabs, google, microsoft-azure)"
    ]


def test_audio_false_refuses_voice_settings_and_voice_behaviours() -> None:
    found = problems(
        VOICE
        + """\
    audio: false
    behaviours:
      greeting: {text: hi}
"""
    )
    assert [p.split(": ", 2)[1] for p in found] == [
        "templates.voice.stt",
        "templates.voice.tts",
        "templates.voice.behaviours.greeting",
    ]


def test_loading_audio_needs_livekit_and_a_valid_clip(tmp_path: Path) -> None:
    short = tmp_path / "short.pcm"
    short.write_bytes(b"\0\0" * 100)
    found = problems(
        VOICE
        + f"""\
    loading_audio: {{path: {short}, format: pcm, sample_rate: 16000}}
"""
    )
    assert found == [
        "test.yaml:15: templates.voice.loading_audio: needs audio: true and a livekit section "
        "(the clip plays in the LiveKit room)",
        "test.yaml:15: templates.voice.loading_audio.path: the clip lasts 6 ms; the server "
        "takes 250 to 10000 ms",
    ]


def test_the_inbound_webhook_builds_temporary_sessions_in_the_callers_room() -> None:
    config = load(
        VOICE
        + """\
    livekit: {room_name: ignored-for-calls, enable_recording: true}
    stream_id: "{session}"
inbound:
  sip_webhook:
    secrets: ["${env:SIP_SECRET}"]
    template: voice
""",
        env={"SIP_SECRET": "0123456789abcdef"},
    )
    hook = config.inbound.sip_webhook
    assert hook is not None
    assert (hook.path, hook.max_sessions, hook.max_body_bytes, hook.tolerance_s) == (
        "/webhooks/sip",
        None,  # unset: admission's cap applies
        65536,
        300.0,
    )
    assert config.max_sessions == 10
    spec = config.inbound_session("sip-call-1", room_name="call-1")
    assert spec.origin == "inbound"
    assert spec.policy.restart == "temporary"
    assert spec.stream_id == "sip-call-1"
    livekit = spec.wire_livekit()
    assert livekit is not None
    assert livekit.room_name == "call-1"
    assert livekit.enable_recording is True


# ------------------------------------------------------------------ agents


def test_python_agent_functions_are_imported_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "saynad_test_agent_module.py"
    module.write_text(
        "async def reply(text):\n    return text\n\ndef sync_reply(text):\n    return text\n"
        "class Agents:\n    @staticmethod\n    async def nested(text):\n        return text\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "saynad_test_agent_module", raising=False)
    template = VOICE + "    behaviours:\n      agent:\n"
    config = load(template + "        {kind: python, function: 'saynad_test_agent_module:reply'}")
    assert config.templates["voice"].behaviours.agent is not None
    load(template + "        {kind: python, function: 'saynad_test_agent_module:Agents.nested'}")
    for function, message in [
        ("saynad_test_agent_module:sync_reply", "is not an async function"),
        ("saynad_test_agent_module:missing", "has no attribute 'missing'"),
        ("saynad_test_agent_module", "expected 'module:function'"),
        (":reply", "expected 'module:function'"),
    ]:
        found = problems(template + f"        {{kind: python, function: '{function}'}}")
        assert len(found) == 1, found
        assert message in found[0], found


def test_a_module_that_fails_on_import_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "saynad_test_broken_module.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    [problem] = problems(
        VOICE
        + "    behaviours:\n      agent:\n"
        + "        {kind: python, function: 'saynad_test_broken_module:f'}"
    )
    assert "cannot import module 'saynad_test_broken_module': RuntimeError: boom" in problem


def test_openai_needs_a_key_only_for_the_openai_api() -> None:
    base = VOICE + "    behaviours:\n      agent:\n"
    [problem] = problems(base + "        {kind: openai, model: gpt-4o-mini}")
    assert "agent.api_key: required for api.openai.com" in problem
    config = load(
        base + "        {kind: openai, model: llama3, base_url: 'http://127.0.0.1:11434/v1'}"
    )
    assert config.templates["voice"].behaviours.agent is not None


# ------------------------------------------------------------------ wire types


def test_specs_build_the_wire_config_frame(tmp_path: Path) -> None:
    google = tmp_path / "sa.json"
    google.write_text('{"type": "service_account"}')
    config = load(
        f"""\
        templates:
          t:
            stt:
              provider: google
              language: en-US
              sample_rate: 24000
              channels: 1
              punctuation: false
              encoding: linear16
              model: latest_long
              auth: {{credentials: "${{file:{google}}}"}}
            tts:
              provider: azure
              model: ""
              voice_id: en-US-JennyNeural
              connection_timeout_s: 5
              pronunciations: [{{word: API, pronunciation: A P I}}]
              auth: {{api_key: "${{env:AZURE_KEY}}", region: westeurope}}
            livekit: {{listen_participants: [caller]}}
            loading_audio: {{path: {DATA_WAV}, volume: 0.5}}
        sessions:
          - {{name: s, template: t, livekit: {{room_name: r}}}}
        """,
        env={"AZURE_KEY": "azure-key"},
    )
    [spec] = config.sessions
    frame = spec.config_frame()
    assert frame.stt_config is not None
    assert frame.tts_config is not None
    assert spec.wire_stt() == frame.stt_config
    stt, tts = spec.wire_stt(), spec.wire_tts()
    assert stt is not None
    assert stt.auth == GoogleAuth(credentials='{"type": "service_account"}')
    assert tts is not None
    assert tts.auth == AzureAuth(api_key="azure-key", region="westeurope")
    wire = json.loads(encode_client_frame(frame))
    assert wire["type"] == "config"
    assert "stream_id" not in wire  # unset fields are omitted, never null
    assert wire["tts_config"]["connection_timeout"] == 5
    assert "speaking_rate" not in wire["tts_config"]
    assert wire["tts_config"]["pronunciations"] == [{"word": "API", "pronunciation": "A P I"}]
    assert wire["livekit"] == {"room_name": "r", "listen_participants": ["caller"]}
    assert wire["loading_audio"]["volume"] == 0.5
    assert wire["loading_audio"]["data"].startswith("UklGR")  # base64 of "RIFF"


def test_api_key_auth_and_an_audio_free_session() -> None:
    config = load(
        """\
        templates:
          t:
            audio: false
            livekit: {}
          v:
            stt: {provider: deepgram, language: en, sample_rate: 16000, channels: 1,
                  punctuation: true, encoding: linear16, model: nova-3,
                  auth: {api_key: "${env:DG}"}}
            tts: {provider: cartesia, model: sonic, voice_id: v1}
        sessions:
          - {name: data-only, template: t, livekit: {room_name: chat}}
          - {name: voice, template: v}
        """,
        env={"DG": "dg-key"},
    )
    data_only, voice = config.sessions
    assert data_only.wire_stt() is None
    assert data_only.wire_tts() is None
    assert json.loads(encode_client_frame(data_only.config_frame())) == {
        "type": "config",
        "audio": False,
        "livekit": {"room_name": "chat"},
    }
    stt = voice.wire_stt()
    assert stt is not None
    assert stt.auth == ApiKeyAuth(api_key="dg-key")
    assert voice.wire_livekit() is None
    assert voice.wire_loading_audio() is None


def test_render_placeholders() -> None:
    assert render_placeholders("{session}-{date}.jsonl", {"session": "a", "date": "d"}) == (
        "a-d.jsonl"
    )
    assert render_placeholders("{{literal}}-{session}", {"session": "a"}) == "{literal}-a"


def test_summary_mentions_every_section() -> None:
    config = load(
        VOICE
        + """\
    behaviours: {greeting: {text: hi}}
sessions:
  - {name: a, template: voice}
  - {name: b, template: voice, enabled: false}
"""
    )
    summary = summarize(config)
    assert summary.startswith("test.yaml: configuration OK")
    for fragment in (
        "embedded emulator",
        "127.0.0.1:9464",
        "templates: 1 (voice)",
        "- a (template voice, WebSocket only",
        "disabled:  b",
        "no SIP webhook",
    ):
        assert fragment in summary


def test_header_maps_are_redacted_immutable_and_compare_by_value() -> None:
    text = VOICE + "    behaviours:\n      agent: {kind: http, url: 'http://h', headers: {X: y}}\n"
    a, b = load(text), load(text)
    assert a.templates == b.templates
    agent = a.templates["voice"].behaviours.agent
    assert isinstance(agent, HttpAgentSettings)
    assert agent.headers["X"] == Secret("y")
    assert repr(agent.headers) == "{'X': ***}"
    assert hash(agent) == hash(b.templates["voice"].behaviours.agent)
    with pytest.raises(TypeError):
        agent.headers["X"] = Secret("z")  # type: ignore[index]


# ------------------------------------------------------------------ robustness and rarer checks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "logging:\n  level: a\x07b\n",
            "test.yaml:2: invalid YAML: special characters are not allowed ('\\x07')",
        ),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "test.yaml:1: the document nests too deeply"),
        (
            "sessions: !!omap [a: 1]\n",
            "test.yaml:1: sessions: unsupported YAML tag 'tag:yaml.org,2002:omap'",
        ),
        (
            "logging:\n  <<: 1\n",
            "test.yaml:2: logging: invalid merge: expected a mapping or list of mappings for "
            "merging, but found scalar",
        ),
        (
            "logging:\n  !!int abc: 1\n",
            "test.yaml:2: logging: invalid YAML value: invalid literal for int() with base 10: "
            "'abc'",
        ),
    ],
)
def test_more_yaml_failures(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_depth_and_alias_expansion_are_bounded() -> None:
    deep = problems("logging: " + "[" * 70 + "]" * 70 + "\n")
    assert "the document nests more than 64 levels deep" in deep[0]
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for name, prev in zip("bcdef", "abcde", strict=True):
        laughs += f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]\n"
    found = problems("sessions: []\n" + laughs.replace("a: &a", "templates: &a", 1))
    assert any("the document expands to more than 100000 values" in p for p in found)


@pytest.mark.parametrize(
    ("sinks", "expected"),
    [
        ("[{path: x}]", "transcripts[0]: missing required key 'kind' (one of: jsonl, http)"),
        (
            "[jsonl]",
            "transcripts[0]: expected a mapping with a kind (one of: jsonl, http), got 'jsonl'",
        ),
        (
            "[{kind: http, url: 'http://h', headers: [a]}]",
            "transcripts[0].headers: expected a mapping, got a list",
        ),
        (
            "[{kind: http, url: 'http://[::1'}]",
            "transcripts[0].url: not a valid URL (Invalid IPv6 URL): 'http://[::1'",
        ),
        (
            "[{kind: http, url: 'http://h', batch_size: 10, queue_size: 5}]",
            "transcripts[0].batch_size: batch_size (10) must not exceed queue_size (5)",
        ),
        ("[{kind: jsonl, path: 'a{'}]", "transcripts[0].path: malformed placeholder in 'a{'"),
        (
            "[{kind: jsonl, path: '{session!r}'}]",
            "transcripts[0].path: unknown placeholder {session!r}",
        ),
    ],
)
def test_transcript_sink_problems(sinks: str, expected: str) -> None:
    [problem] = problems(VOICE + f"    behaviours:\n      transcripts: {sinks}\n")
    assert problem.startswith("test.yaml:16: templates.voice.behaviours." + expected)


def test_provider_auth_fields_must_fit_the_provider() -> None:
    found = problems(
        """\
        templates:
          t:
            stt: {provider: deepgram, language: en, sample_rate: 16000, channels: 1,
                  punctuation: true, encoding: linear16, model: nova-3,
                  auth: {api_key: "${env:K}", region: eu}}
            tts: {provider: google, model: "", auth: {api_key: "${env:K}"}}
        """,
        env={"K": "k"},
    )
    assert found == [
        "test.yaml:5: templates.t.stt.auth.region: not used by provider deepgram "
        "(it takes: api_key)",
        "test.yaml:6: templates.t.tts.auth.api_key: not used by provider google "
        "(it takes: credentials)",
        "test.yaml:6: templates.t.tts.auth: missing 'credentials', required for provider google",
    ]


def test_sayna_url_port_zero() -> None:
    assert problems("sayna:\n  url: http://h:0\n") == [
        "test.yaml:2: sayna.url: the port must be from 1 to 65535: 'http://h:0'"
    ]


def test_a_behaviour_problem_from_a_session_override_points_at_the_session() -> None:
    found = problems(
        VOICE
        + """\
sessions:
  - name: a
    template: voice
    behaviours:
      greeting: {text: hi, when: first_participant}
"""
    )
    assert found == [
        "test.yaml:19: sessions[0].behaviours.greeting.when: first_participant needs a livekit "
        "section (participants join a LiveKit room)"
    ]


def test_raw_pcm_audio_sources(tmp_path: Path) -> None:
    pcm = tmp_path / "caller.pcm"
    pcm.write_bytes(b"\0\0" * 1600)
    source = f"{{path: {pcm}, format: pcm, sample_rate: 16000}}"
    good = load(VOICE + f"    behaviours:\n      audio:\n        source: {source}\n")
    assert good.templates["voice"].behaviours.audio is not None
    found = problems(
        VOICE
        + f"""\
    behaviours:
      audio:
        source: {{path: {pcm}, format: pcm, sample_rate: 8000}}
  no-rate:
    stt: *stt
    tts: *tts
    behaviours:
      audio:
        source: {{path: {pcm}, format: pcm}}
  wav-with-rate:
    stt: *stt
    tts: *tts
    behaviours:
      audio:
        source: {{path: {DATA_WAV}, sample_rate: 16000}}
  missing:
    stt: *stt
    tts: *tts
    behaviours:
      audio:
        source: {{path: {pcm}.gone, format: pcm, sample_rate: 16000}}
"""
    )
    assert found == [
        "test.yaml:17: templates.voice.behaviours.audio.source.sample_rate: 8000 Hz, but "
        "stt.sample_rate is 16000 (Sayna does not resample)",
        "test.yaml:23: templates.no-rate.behaviours.audio.source.sample_rate: required when "
        "format is pcm",
        "test.yaml:29: templates.wav-with-rate.behaviours.audio.source.sample_rate: only for "
        "format pcm (a WAV header carries its rate)",
        f"test.yaml:35: templates.missing.behaviours.audio.source.path: file {pcm}.gone does "
        "not exist",
    ]


def _wav(
    path: Path, *, rate: int = 16000, channels: int = 1, width: int = 2, ms: int = 500
) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\0" * (rate * ms // 1000) * channels * width)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: _wav(d / "a.wav", width=1), "is not 16-bit PCM (8-bit)"),
        (
            lambda d: _wav(d / "a.wav", rate=4000),
            "the clip is 4000 Hz; the server takes 8000 to 48000 Hz",
        ),
        (
            lambda d: _wav(d / "a.wav", ms=100),
            "the clip lasts 100 ms; the server takes 250 to 10000 ms",
        ),
        (
            lambda d: _wav(d / "a.wav", channels=3),
            "the clip has 3 channels; the server takes mono or stereo",
        ),
        (lambda d: d / "missing.wav", "does not exist"),
        (lambda d: d, "is not a file"),
    ],
)
def test_loading_audio_clip_checks(tmp_path: Path, make: Any, message: str) -> None:
    clip = make(tmp_path)
    found = problems(VOICE + f"    livekit: {{}}\n    loading_audio: {{path: '{clip}'}}\n")
    assert len(found) == 1, found
    assert found[0].startswith("test.yaml:16: templates.voice.loading_audio.path: ")
    assert message in found[0]


def test_loading_audio_size_and_raw_pcm(tmp_path: Path) -> None:
    raw = tmp_path / "clip.raw"
    raw.write_bytes(b"\1\0" * 8000)  # 0.5 s at 16 kHz mono
    [problem] = problems(VOICE + f"    livekit: {{}}\n    loading_audio: {{path: '{raw}'}}\n")
    assert "not a WAV file: give format: pcm and sample_rate for raw PCM" in problem
    clip = f"{{path: '{raw}', format: pcm, sample_rate: 16000}}"
    config = load(VOICE + f"    livekit: {{}}\n    loading_audio: {clip}\n")
    assert config.templates["voice"].loading_audio is not None
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 2_000_000)
    [problem] = problems(VOICE + f"    livekit: {{}}\n    loading_audio: {{path: '{big}'}}\n")
    assert "the clip has 2000000 bytes; the server accepts at most 1924096" in problem


def test_an_audio_source_that_is_not_a_wav(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    [problem] = problems(
        VOICE + f"    behaviours:\n      audio:\n        source: {{path: '{junk}'}}\n"
    )
    assert f"{junk} is not a readable WAV file" in problem


def test_secret_files_are_size_limited(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1 << 20 + 1))
    [problem] = problems(f"sayna:\n  url: http://h\n  api_key: ${{file:{big}}}\n")
    assert problem.endswith("is larger than 1048576 bytes")


def test_templates_section_must_be_a_mapping() -> None:
    assert problems("templates: [a]\n") == [
        "test.yaml:1: templates: expected a mapping of template names, got a list"
    ]


def test_behaviours_that_need_audio_or_livekit() -> None:
    found = problems(
        """\
        templates:
          quiet:
            audio: false
            livekit: {}
            behaviours:
              agent: {kind: echo}
              audio: {source: {path: x.wav}}
          web:
            stt: {provider: deepgram, language: en, sample_rate: 16000, channels: 1,
                  punctuation: true, encoding: linear16, model: nova-3}
            tts: {provider: deepgram, model: aura-2}
            behaviours:
              agent: {kind: echo, loading_indicator: true}
              end: {on_participant_disconnected: true}
        """
    )
    assert [p.split(": ", 2)[1:] for p in found] == [
        ["templates.quiet.behaviours.agent", "an agent listens and speaks: it needs audio: true"],
        ["templates.quiet.behaviours.audio.source", "streaming audio needs audio: true"],
        [
            "templates.quiet.behaviours.audio.source.path",
            f"file {Path.cwd() / 'x.wav'} does not exist",
        ],
        [
            "templates.web.behaviours.agent.loading_indicator",
            "needs a loading_audio clip (and a livekit section) to play while thinking",
        ],
        [
            "templates.web.behaviours.end.on_participant_disconnected",
            "needs a livekit section (participants join a LiveKit room)",
        ],
    ]
