"""The daemon's configuration: one YAML file decoded into an immutable, typed value.

::

    load_config(path) ─ read ─ YAML nodes ─ Python values ─ typed Structs ─ checks ─ Config
                               (marks,       (secrets      (unknown keys    (cross-     │
                                duplicate     resolved)     rejected)        section)   ▼
                                keys)                                          SessionSpec × N

The file has eleven sections (``sayna``, ``http``, ``logging``, ``runtime``,
``sharding``, ``defaults``, ``admission``, ``inbound``, ``outbound``, ``templates``,
``sessions``); ``docs/configuration.md`` describes every key. Loading either returns a
:class:`Config` or raises :class:`~saynad.errors.ConfigError` listing *every* problem
found, each formatted as ``FILE:LINE: PATH: what was expected``::

    config/x.yaml:12: sessions[3].template: unknown template 'agnt' (known: agent, lobby)

How all problems are found in one pass: the YAML is composed into nodes (so every value
keeps its line), turned into plain Python values with secrets resolved, then decoded
field by field into frozen msgspec Structs. msgspec alone stops at the first error of a
document; decoding each field separately (scalars still go through
:func:`msgspec.convert`) lets one bad value be reported without hiding the next one.

Secrets never sit in the file: a whole scalar value ``${env:NAME}``, ``${file:/abs/path}``
or ``${credential:NAME}`` (systemd's ``$CREDENTIALS_DIRECTORY``) is resolved at load.
Secret fields (API keys, tokens, webhook secrets) accept nothing else and hold a
:class:`Secret`, whose ``repr`` and ``str`` are ``***`` (HTTP header values also hold a
``Secret`` but may be literal).

Sessions are resolved at load: defaults ← template ← session overrides become one
:class:`SessionSpec` per always-on session. Specs compare by value, so a reload can
restart exactly the sessions whose spec changed.

The package, one concern a module (everything public is imported from here):

==================  ====================================================================
``_values``         value types (:class:`Secret`, :class:`FrozenMap`, annotated scalars)
                    and the checks of a single value
``_schema``         the base of every Struct and the daemon-wide sections
``_templates``      what a session is made of: templates, session entries, behaviours
``_specs``          resolved sessions (:class:`SessionSpec`), :class:`Config`
``_checks``         checks across a resolved session (providers, rooms, WAV files)
``_secrets``        ``${…}`` references and the careful file reads behind them
``_yaml``           YAML text to plain values, every line recorded
``_convert``        plain values to Structs, every problem reported (the all-errors walker)
``_report``         the problems of one load and how they are worded
``_loader``         one load, end to end: :func:`load_config`, :func:`load_config_text`
``_summary``        :func:`summarize`, for ``saynad check``
==================  ====================================================================
"""

from __future__ import annotations

from saynad.config._loader import (
    CONFIG_FILE_MAX_BYTES,
    DEFAULT_CONFIG_PATH,
    load_config,
    load_config_text,
)
from saynad.config._schema import (
    SCOPES,
    AdmissionSettings,
    ApiTokenSettings,
    BackoffSettings,
    Defaults,
    EmulatorSettings,
    HttpSettings,
    InboundSettings,
    IntensitySettings,
    KeepaliveSettings,
    LoggingSettings,
    OutboundSettings,
    OutboundSipSettings,
    RuntimeSettings,
    SaynaSettings,
    ShardingSettings,
    SipWebhookSettings,
    WebhookListenerSettings,
)
from saynad.config._specs import ORIGINS, Config, Origin, SessionPolicy, SessionSpec
from saynad.config._summary import summarize
from saynad.config._templates import (
    AgentSettings,
    AudioSettings,
    AudioSinkSettings,
    AudioSourceSettings,
    Behaviours,
    EchoAgentSettings,
    EndSettings,
    GreetingSettings,
    HttpAgentSettings,
    HttpSinkSettings,
    JsonlSinkSettings,
    LiveKitSettings,
    LoadingAudioSettings,
    OpenAIAgentSettings,
    PronunciationSettings,
    ProviderAuthSettings,
    PythonAgentSettings,
    SessionEntry,
    SttSettings,
    Template,
    TranscriptSinkSettings,
    TtsSettings,
)
from saynad.config._values import FrozenMap, Secret, render_placeholders

_SessionEntry = SessionEntry  # the name the property tests know it by

__all__ = [
    "CONFIG_FILE_MAX_BYTES",
    "DEFAULT_CONFIG_PATH",
    "ORIGINS",
    "SCOPES",
    "AdmissionSettings",
    "AgentSettings",
    "ApiTokenSettings",
    "AudioSettings",
    "AudioSinkSettings",
    "AudioSourceSettings",
    "BackoffSettings",
    "Behaviours",
    "Config",
    "Defaults",
    "EchoAgentSettings",
    "EmulatorSettings",
    "EndSettings",
    "FrozenMap",
    "GreetingSettings",
    "HttpAgentSettings",
    "HttpSettings",
    "HttpSinkSettings",
    "InboundSettings",
    "IntensitySettings",
    "JsonlSinkSettings",
    "KeepaliveSettings",
    "LiveKitSettings",
    "LoadingAudioSettings",
    "LoggingSettings",
    "OpenAIAgentSettings",
    "Origin",
    "OutboundSettings",
    "OutboundSipSettings",
    "PronunciationSettings",
    "ProviderAuthSettings",
    "PythonAgentSettings",
    "RuntimeSettings",
    "SaynaSettings",
    "Secret",
    "SessionPolicy",
    "SessionSpec",
    "ShardingSettings",
    "SipWebhookSettings",
    "SttSettings",
    "Template",
    "TranscriptSinkSettings",
    "TtsSettings",
    "WebhookListenerSettings",
    "load_config",
    "load_config_text",
    "render_placeholders",
    "summarize",
]
