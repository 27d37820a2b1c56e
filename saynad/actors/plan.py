"""From a configured :class:`~saynad.config.SessionSpec` to a runnable session.

:func:`build_plan` resolves the wire types and builds the behaviours of one run. It is
called at every (re)start, so a restarted session gets fresh behaviour state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from saynad.actors.behaviour import Behaviour, SessionIdentity
from saynad.actors.behaviours.agent import EchoAgent
from saynad.actors.behaviours.audio import AudioSink, AudioSource
from saynad.actors.behaviours.greeting import Greeting
from saynad.actors.behaviours.transcripts import Journal, JsonlSink
from saynad.actors.session import EndPolicy, SessionPlan
from saynad.actors.supervisor import Child, Policy, RestartPolicy
from saynad.config import EchoAgentSettings, JsonlSinkSettings, SessionSpec

__all__ = ["CallInfo", "build_plan", "child_for"]


@dataclass(frozen=True)
class CallInfo:
    """What an inbound call brings: numbers and SIP headers, for logs and behaviours."""

    caller: str | None = None
    callee: str | None = None
    sip_headers: Mapping[str, str] = field(default_factory=dict)


def child_for(spec: SessionSpec) -> Child:
    """The supervisor's view of a session: its name, spec and policy."""
    policy = spec.policy
    return Child(
        name=spec.name,
        spec=spec,
        origin=spec.origin,
        template=spec.template,
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
    call: CallInfo | None = None,
    max_duration_s: float | None = None,
) -> SessionPlan:
    """Everything one run of ``spec`` needs. ``max_duration_s`` caps inbound calls."""
    call = call or CallInfo()
    identity = SessionIdentity(
        name=spec.name,
        template=spec.template,
        origin=spec.origin,
        caller=call.caller,
        callee=call.callee,
        sip_headers=dict(call.sip_headers),
    )
    b = spec.behaviours
    end = b.end
    limits = [v for v in (end.max_duration_s if end else None, max_duration_s) if v is not None]
    tts_rate = (spec.tts.sample_rate if spec.tts else None) or 24_000

    def behaviours(journal: Journal) -> list[Behaviour]:
        made: list[Behaviour] = []
        if b.greeting is not None:
            made.append(
                Greeting(
                    b.greeting.text,
                    when=b.greeting.when,
                    allow_interruption=b.greeting.allow_interruption,
                )
            )
        if isinstance(b.agent, EchoAgentSettings):
            made.append(EchoAgent(journal))
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
            made.append(AudioSink(Path(b.audio.sink.dir), sample_rate=tts_rate))
        return made

    sinks = [
        JsonlSink(s.path, fsync=s.fsync, fsync_interval_s=s.fsync_interval_s)
        for s in b.transcripts
        if isinstance(s, JsonlSinkSettings)
    ]
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
        behaviours=behaviours,
        sinks=sinks,
        end=EndPolicy(
            on_participant_disconnected=end.on_participant_disconnected if end else False,
            max_duration_s=min(limits) if limits else None,
            idle_timeout_s=end.idle_timeout_s if end else None,
            goodbye_text=end.goodbye_text if end else None,
        ),
    )
