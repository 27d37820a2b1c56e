"""From a configured :class:`~saynad.config.SessionSpec` to a runnable session.

:func:`build_plan` resolves the wire types and builds the behaviours of one run. It is
called at every (re)start, so a restarted session gets fresh behaviour state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from saynad.actors.behaviour import Behaviour, SessionIdentity
from saynad.actors.behaviours.agent import (
    DEFAULT_HISTORY_TURNS,
    Agent,
    AgentBackend,
    Conversation,
    EchoBackend,
)
from saynad.actors.behaviours.audio import AudioSink, AudioSource
from saynad.actors.behaviours.backends import (
    HttpBackend,
    OpenAIBackend,
    PythonBackend,
    load_function,
)
from saynad.actors.behaviours.greeting import Greeting
from saynad.actors.behaviours.transcripts import HttpSink, Journal, JsonlSink, Sink
from saynad.actors.session import EndPolicy, SessionPlan
from saynad.actors.supervisor import Child, Policy, RestartPolicy
from saynad.config import (
    AgentSettings,
    EchoAgentSettings,
    FrozenMap,
    HttpAgentSettings,
    JsonlSinkSettings,
    OpenAIAgentSettings,
    PythonAgentSettings,
    SessionSpec,
)

__all__ = [
    "CallRecord",
    "build_agent",
    "build_behaviours",
    "build_plan",
    "build_sinks",
    "child_for",
    "fill_variables",
]


@dataclass(frozen=True)
class CallRecord:
    """What a call or an API request brings, frozen: the numbers, the SIP headers, the
    room and the request's variables, for logs and behaviours. Hashable (the mappings
    are held in :class:`FrozenMap`), so it can ride in a child spec."""

    caller: str | None = None
    callee: str | None = None
    sip_headers: Mapping[str, str] = field(default_factory=FrozenMap)
    room: str | None = None
    variables: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        if not isinstance(self.sip_headers, FrozenMap):
            object.__setattr__(self, "sip_headers", FrozenMap(self.sip_headers))
        if not isinstance(self.variables, FrozenMap):
            object.__setattr__(self, "variables", FrozenMap(self.variables))


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")


def fill_variables(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` whose name is in ``variables`` replaced by its value;
    everything else (other braces, unknown names) stays as written, so a text written
    before variables existed reads the same."""
    if not variables or "{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def child_for(spec: SessionSpec, *, ticket: Hashable = None) -> Child:
    """The supervisor's view of a session: its name, spec and policy; ``ticket`` is what
    admission handed a session started from outside (:mod:`saynad.actors.admission`)."""
    policy = spec.policy
    return Child(
        name=spec.name,
        spec=spec,
        origin=spec.origin,
        template=spec.template,
        ticket=ticket,
        policy=Policy(
            restart=RestartPolicy(policy.restart),
            backoff_initial_s=policy.backoff.initial_s,
            backoff_max_s=policy.backoff.max_s,
            backoff_multiplier=policy.backoff.multiplier,
            max_restarts=policy.intensity.max_restarts,
            window_s=policy.intensity.window_s,
            drain_timeout_s=policy.drain_timeout_s,
        ),
    )


def build_plan(
    spec: SessionSpec,
    *,
    url: str,
    api_key: str | None,
    call: CallRecord | None = None,
    max_duration_s: float | None = None,
    extra: Callable[[Journal], Sequence[Behaviour]] | None = None,
) -> SessionPlan:
    """Everything one run of ``spec`` needs. ``max_duration_s`` caps sessions started
    from outside; ``call.variables`` fill the greeting and goodbye lines' placeholders;
    ``extra`` adds behaviours the daemon gives this run (a dialler, remote control)."""
    call = call or CallRecord()
    identity = SessionIdentity(
        name=spec.name,
        template=spec.template,
        origin=spec.origin,
        caller=call.caller,
        callee=call.callee,
        sip_headers=dict(call.sip_headers),
        variables=dict(call.variables),
    )
    if call.variables:
        spec = _with_variables(spec, call.variables)
    b = spec.behaviours
    end = b.end
    limits = [v for v in (end.max_duration_s if end else None, max_duration_s) if v is not None]
    sinks = build_sinks(spec)

    def behaviours(journal: Journal) -> list[Behaviour]:
        made = build_behaviours(spec, journal)
        if extra is not None:
            made.extend(extra(journal))
        return made

    policy = spec.policy
    return SessionPlan(
        url=url,
        identity=identity,
        stt=spec.wire_stt(),
        tts=spec.wire_tts(),
        livekit=spec.wire_livekit(),
        audio=spec.audio,
        api_key=api_key,
        stream_id=spec.stream_id,
        loading_audio=spec.wire_loading_audio(),
        ready_timeout_s=policy.ready_timeout_s,
        connect_timeout_s=policy.connect_timeout_s,
        keepalive_interval_s=policy.keepalive.interval_s,
        keepalive_timeout_s=policy.keepalive.timeout_s,
        behaviours=behaviours,
        sinks=sinks,
        end=EndPolicy(
            # A call ends when the other side hangs up, whatever the template says.
            on_participant_disconnected=spec.origin in ("inbound", "outbound")
            or (end.on_participant_disconnected if end else False),
            max_duration_s=min(limits) if limits else None,
            idle_timeout_s=end.idle_timeout_s if end else None,
            goodbye_text=end.goodbye_text if end else None,
        ),
    )


def _with_variables(spec: SessionSpec, variables: Mapping[str, str]) -> SessionSpec:
    """``spec`` with its greeting and goodbye lines filled from ``variables``."""
    b = spec.behaviours
    replace = msgspec.structs.replace
    greeting = b.greeting
    if greeting is not None:
        greeting = replace(greeting, text=fill_variables(greeting.text, variables))
    end = b.end
    if end is not None and end.goodbye_text is not None:
        end = replace(end, goodbye_text=fill_variables(end.goodbye_text, variables))
    return replace(spec, behaviours=replace(b, greeting=greeting, end=end))


def build_behaviours(spec: SessionSpec, journal: Journal) -> list[Behaviour]:
    """Fresh behaviours for one run of ``spec`` (the transcript recorder is the actor's)."""
    b = spec.behaviours
    made: list[Behaviour] = []
    agent = b.agent
    conversation = Conversation(
        agent.max_history_turns if isinstance(agent, OpenAIAgentSettings) else DEFAULT_HISTORY_TURNS
    )
    if b.greeting is not None:
        made.append(
            Greeting(
                b.greeting.text,
                when=b.greeting.when,
                allow_interruption=b.greeting.allow_interruption,
                journal=journal,
                conversation=conversation,
            )
        )
    if agent is not None:
        made.append(build_agent(agent, journal=journal, conversation=conversation))
    if b.audio is not None and b.audio.source is not None:
        src = b.audio.source
        made.append(
            AudioSource(
                Path(src.path),
                fmt=src.format,
                sample_rate=src.sample_rate or (spec.stt.sample_rate if spec.stt else 16_000),
                channels=spec.stt.channels if spec.stt else 1,
                realtime=src.realtime,
                loop=src.loop,
                chunk_ms=src.chunk_ms,
            )
        )
    if b.audio is not None and b.audio.sink is not None:
        tts_rate = (spec.tts.sample_rate if spec.tts else None) or 24_000
        made.append(AudioSink(b.audio.sink.dir, sample_rate=tts_rate))
    return made


def build_agent(
    settings: AgentSettings, *, journal: Journal | None, conversation: Conversation
) -> Agent:
    """The agent behaviour for ``settings`` (one backend per run: its own HTTP client)."""
    backend: AgentBackend
    if isinstance(settings, EchoAgentSettings):
        backend = EchoBackend()
    elif isinstance(settings, OpenAIAgentSettings):
        backend = OpenAIBackend(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key.reveal() if settings.api_key is not None else None,
            system_prompt=settings.system_prompt,
            temperature=settings.temperature,
            timeout_s=settings.timeout_s,
        )
    elif isinstance(settings, HttpAgentSettings):
        backend = HttpBackend(
            settings.url,
            headers={k: v.reveal() for k, v in settings.headers.items()},
            timeout_s=settings.timeout_s,
        )
    else:
        assert isinstance(settings, PythonAgentSettings)
        backend = PythonBackend(load_function(settings.function))
    return Agent(
        backend,
        journal=journal,
        conversation=conversation,
        barge_in=settings.barge_in,
        fallback_text=settings.fallback_text,
        timeout_s=settings.timeout_s,
        loading_indicator=settings.loading_indicator,
    )


def build_sinks(spec: SessionSpec) -> list[Sink]:
    """The transcript sinks of ``spec`` (fresh per run)."""
    sinks: list[Sink] = []
    for s in spec.behaviours.transcripts:
        if isinstance(s, JsonlSinkSettings):
            sinks.append(JsonlSink(s.path, fsync=s.fsync, fsync_interval_s=s.fsync_interval_s))
        else:
            sinks.append(
                HttpSink(
                    s.url,
                    headers={k: v.reveal() for k, v in s.headers.items()},
                    batch_size=s.batch_size,
                    flush_interval_s=s.flush_interval_s,
                    queue_size=s.queue_size,
                    max_retries=s.max_retries,
                    timeout_s=s.timeout_s,
                )
            )
    return sinks
