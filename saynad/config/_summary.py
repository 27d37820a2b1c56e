"""The short human summary ``saynad check`` prints for a loaded configuration."""

from __future__ import annotations

from saynad.config._specs import Config
from saynad.config._templates import Behaviours

__all__ = ["summarize"]


def summarize(config: Config) -> str:
    """A short human summary of ``config`` for ``saynad check`` (never shows secrets)."""
    lines = [f"{config.source}: configuration OK"]
    sayna = config.sayna
    if sayna.url is None:
        lines.append("  sayna:     embedded emulator (no sayna.url)")
    else:
        key = "api key set" if sayna.api_key is not None else "no api key"
        lines.append(f"  sayna:     {sayna.url} ({key})")
    tokens = config.http.api_tokens()
    if tokens:
        held = ", ".join(f"{t.name}: {'/'.join(t.scopes)}" for t in tokens)
        lines.append(f"  http:      {config.http.listen} (API tokens: {held})")
    else:
        lines.append(f"  http:      {config.http.listen} (no API tokens)")
    lines.append(f"  logging:   level {config.logging.level}, format {config.logging.format}")
    lines.append(f"  runtime:   gc {config.runtime.gc}")
    d = config.defaults
    lines.append(
        f"  defaults:  restart {d.restart}, backoff {d.backoff.initial_s:g}-{d.backoff.max_s:g} s, "
        f"at most {d.intensity.max_restarts} restarts in {d.intensity.window_s:g} s"
    )
    names = ", ".join(config.templates) or "none"
    lines.append(f"  templates: {len(config.templates)} ({names})")
    lines.append(f"  sessions:  {len(config.sessions)} always-on")
    for spec in config.sessions:
        if spec.livekit is not None:
            where = f"LiveKit room {spec.livekit.room_name!r}"
        else:
            where = "WebSocket only"
        kinds = _behaviour_names(spec.behaviours)
        lines.append(
            f"    - {spec.name} (template {spec.template}, {where}, restart "
            f"{spec.policy.restart}; {kinds})"
        )
    if config.disabled_sessions:
        lines.append(f"  disabled:  {', '.join(config.disabled_sessions)}")
    lines.append(
        f"  admission: at most {config.max_sessions} sessions started from outside at once"
    )
    hook = config.inbound.sip_webhook
    if hook is None:
        lines.append("  inbound:   no SIP webhook")
    else:
        lines.append(
            f"  inbound:   SIP webhook at {hook.path} -> template {hook.template} "
            f"({len(hook.secrets)} secret(s))"
        )
    outbound = [name for name, t in config.templates.items() if t.outbound]
    lines.append(f"  outbound:  {', '.join(outbound) if outbound else 'no template places calls'}")
    return "\n".join(lines)


def _behaviour_names(behaviours: Behaviours) -> str:
    names = []
    if behaviours.greeting is not None:
        names.append("greeting")
    if behaviours.agent is not None:
        names.append(f"{behaviours.agent.__struct_config__.tag} agent")
    if behaviours.transcripts:
        names.append(f"{len(behaviours.transcripts)} transcript sink(s)")
    if behaviours.audio is not None:
        names.extend(
            part
            for part, value in (
                ("audio source", behaviours.audio.source),
                ("audio sink", behaviours.audio.sink),
            )
            if value is not None
        )
    if behaviours.end is not None:
        names.append("end rules")
    return ", ".join(names) or "no behaviours"
