"""One load: a file → values → typed sections → resolved sessions → checks → Config.

::

    load_config(path) ─ read ─ YAML ─ plain values ─ typed Structs ─ checks ─ Config
                        (at     (_yaml:   (_secrets:     (_convert:       (_checks,   │
                        most    lines,    references     unknown keys     rooms,      ▼
                        16 MiB) dup keys) resolved)      rejected)        inbound)  SessionSpec × N

:class:`Loader` decodes the sections, the templates (each checked on its own: inbound
calls use them as they are) and the sessions (each decoded over its template, then
checked as a resolved spec), then the checks across sessions (names, LiveKit rooms)
and sections (the webhook's template). Every problem goes into one
:class:`~saynad.config._report.Report`, raised at the end as one
:class:`~saynad.errors.ConfigError`. Relative paths become absolute against the file's
directory; ``builtin:NAME`` names a file shipped with saynad.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from saynad.config._checks import spec_problems
from saynad.config._convert import Converter
from saynad.config._report import BAD, KeyPath, Report, describe_value, unknown_key_message
from saynad.config._schema import (
    SECTIONS,
    AdmissionSettings,
    Defaults,
    HttpSettings,
    InboundSettings,
    LoggingSettings,
    OutboundSettings,
    RuntimeSettings,
    SaynaSettings,
    Settings,
    ShardingSettings,
)
from saynad.config._secrets import FileTooLargeError, References, read_regular_file
from saynad.config._specs import Config, SessionSpec, build_spec
from saynad.config._templates import Behaviours, JsonlSinkSettings, SessionEntry, Template
from saynad.config._values import NAME_PATTERN, FrozenMap
from saynad.config._yaml import EMPTY, Reader
from saynad.errors import ConfigError
from saynad.shipped import BUILTIN_PREFIX, ShippedFileError, shipped_path

__all__ = ["CONFIG_FILE_MAX_BYTES", "DEFAULT_CONFIG_PATH", "load_config", "load_config_text"]

DEFAULT_CONFIG_PATH: Final = "/etc/saynad/saynad.yaml"
"""Where ``saynad run`` and ``saynad check`` look when ``--config`` is not given."""

CONFIG_FILE_MAX_BYTES: Final = 16 << 20
"""The largest configuration file ``load_config`` reads (16 MiB); larger is refused unread."""

_S = TypeVar("_S", bound=Settings)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and check the YAML file at ``path``.

    ``env`` (default: ``os.environ``) resolves ``${env:…}`` and supplies
    ``CREDENTIALS_DIRECTORY`` for ``${credential:…}``. Relative paths in the file are
    relative to the file's directory. Raises :class:`~saynad.errors.ConfigError` with
    every problem found.
    """
    source = str(path)
    try:
        data = read_regular_file(Path(path), CONFIG_FILE_MAX_BYTES)
    except FileTooLargeError as exc:
        raise ConfigError([f"{source}: {exc.strerror}"]) from exc
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{source}:{line}: the file is not UTF-8 text"]) from exc
    environ = os.environ if env is None else env
    return load_config_text(
        text,
        source_name=source,
        env=environ,
        credentials_dir=environ.get("CREDENTIALS_DIRECTORY"),
        base_dir=Path(path).absolute().parent,
    )


def load_config_text(
    text: str,
    *,
    source_name: str = "<config>",
    env: Mapping[str, str] | None = None,
    credentials_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> Config:
    """Load a configuration from ``text``; ``source_name`` prefixes every problem.

    ``env`` defaults to ``os.environ``; ``credentials_dir`` (default: none) is where
    ``${credential:NAME}`` looks; ``base_dir`` (default: the current directory) anchors
    relative paths.
    """
    loader = Loader(
        source=source_name,
        env=os.environ if env is None else env,
        credentials_dir=None if credentials_dir is None else Path(credentials_dir),
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
    )
    return loader.load(text)


class Loader:
    """One load: YAML → values (with lines) → Structs → checks → Config or ConfigError."""

    def __init__(
        self,
        *,
        source: str,
        env: Mapping[str, str],
        credentials_dir: Path | None,
        base_dir: Path,
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self.report = Report(source)
        self.reader = Reader(self.report, References(env, credentials_dir))
        self.convert = Converter(self.report).convert

    def load(self, text: str) -> Config:
        data = self.reader.read(text)
        if data is EMPTY:
            self.report.problem((), "the file is empty; expected a mapping of sections", line=1)
        elif data is not BAD and not isinstance(data, dict):
            self.report.problem(
                (),
                f"expected a mapping of sections ({', '.join(SECTIONS)}), "
                f"got {describe_value(data)}",
            )
        if not isinstance(data, dict):
            self.report.raise_if_problems()
        # Problems found while reading values (duplicate keys, missing secrets…) left
        # placeholders behind; decoding carries on so every other problem is reported too.
        config = self.decode_document(data)
        self.report.raise_if_problems()
        return config

    # ---------------------------------------------------------------- values → Structs

    def decode_document(self, data: dict[str, Any]) -> Config:
        for key in data:
            if key not in SECTIONS:
                self.report.problem((key,), unknown_key_message(key, SECTIONS))
        sayna = self.section(data, "sayna", SaynaSettings)
        http = self.section(data, "http", HttpSettings)
        logging = self.section(data, "logging", LoggingSettings)
        runtime = self.section(data, "runtime", RuntimeSettings)
        sharding = self.section(data, "sharding", ShardingSettings)
        defaults = self.section(data, "defaults", Defaults)
        admission = self.section(data, "admission", AdmissionSettings)
        inbound = self.section(data, "inbound", InboundSettings)
        outbound = self.section(data, "outbound", OutboundSettings)
        templates, broken = self.decode_templates(data.get("templates", {}), defaults)
        sessions, disabled = self.decode_sessions(
            data.get("sessions", []), templates, broken, defaults
        )
        self.check_inbound(inbound, templates, broken)
        if http.webhooks is not None and inbound.sip_webhook is None:
            self.report.problem(
                ("http", "webhooks"),
                "the webhook listener serves inbound.sip_webhook, which is not configured",
            )
        self.check_admission(admission, inbound)
        return Config(
            source=self.source,
            sayna=sayna,
            http=http,
            logging=logging,
            runtime=runtime,
            sharding=sharding,
            defaults=defaults,
            admission=admission,
            inbound=inbound,
            outbound=outbound,
            templates=FrozenMap(templates),
            sessions=sessions,
            disabled_sessions=disabled,
        )

    def section(self, data: dict[str, Any], key: str, tp: type[_S]) -> _S:
        """Decode one top-level section; on failure carry on with its defaults."""
        if key not in data:
            return tp()
        value = self.convert(data[key], tp, (key,))
        return value if isinstance(value, tp) else tp()

    def decode_templates(
        self, raw: Any, defaults: Defaults
    ) -> tuple[dict[str, Template], set[str]]:
        """Decode every template; returns the good ones and the names of broken ones."""
        templates: dict[str, Template] = {}
        broken: set[str] = set()
        if raw is BAD:
            return templates, broken
        if not isinstance(raw, dict):
            self.report.problem(
                ("templates",), f"expected a mapping of template names, got {describe_value(raw)}"
            )
            return templates, broken
        bases = {
            "backoff": defaults.backoff,
            "intensity": defaults.intensity,
            "keepalive": defaults.keepalive,
        }
        for name, value in raw.items():
            path: KeyPath = ("templates", name)
            if not re.fullmatch(NAME_PATTERN, name):
                self.report.problem(
                    path, "template names may use only letters, digits, '_', '.', '-'"
                )
            template = self.convert(value, Template, path, field_bases=bases)
            if isinstance(template, Template):
                templates[name] = self.absolute_template(template)
            else:
                broken.add(name)
        for name, template in templates.items():
            # A template must be valid on its own (inbound calls use it as it is).
            # Sessions re-check their merged result; a problem they locate at the
            # template repeats this line exactly and is reported once.
            spec = build_spec(name=name, template_name=name, template=template, defaults=defaults)
            for rel, message in spec_problems(spec):
                self.report.problem(("templates", name, *rel), message)
        return templates, broken

    def decode_sessions(
        self,
        raw: Any,
        templates: Mapping[str, Template],
        broken: set[str],
        defaults: Defaults,
    ) -> tuple[tuple[SessionSpec, ...], tuple[str, ...]]:
        """Decode every session, then check names and rooms across them."""
        if raw is BAD:
            return (), ()
        if not isinstance(raw, list):
            self.report.problem(
                ("sessions",), f"expected a list of sessions, got {describe_value(raw)}"
            )
            return (), ()
        specs: list[SessionSpec] = []
        disabled: list[str] = []
        names: dict[str, int] = {}
        rooms: dict[str, tuple[str, int]] = {}
        for index, item in enumerate(raw):
            path: KeyPath = ("sessions", index)
            # Names are compared on the raw value so a duplicate is reported even when
            # either session has other problems.
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in names:
                first = names[name]
                self.report.problem(
                    (*path, "name"),
                    f"duplicate session name {name!r} (first used by sessions[{first}] "
                    f"at line {self.report.line_of(('sessions', first))})",
                )
                name = None
            elif isinstance(name, str):
                names[name] = index
            spec, enabled = self.decode_session(item, path, templates, broken, defaults)
            if spec is None or name is None:
                continue
            if not enabled:
                disabled.append(spec.name)
                continue
            if spec.livekit is not None:
                self.check_room(spec, item, path, rooms)
            specs.append(spec)
        return tuple(specs), tuple(disabled)

    def decode_session(
        self,
        item: Any,
        path: KeyPath,
        templates: Mapping[str, Template],
        broken: set[str],
        defaults: Defaults,
    ) -> tuple[SessionSpec | None, bool]:
        """Decode one session over its template; returns (spec or None, enabled)."""
        template_name = item.get("template") if isinstance(item, dict) else None
        template = templates.get(template_name) if isinstance(template_name, str) else None
        if template is None:
            if isinstance(template_name, str) and template_name not in broken:
                known = ", ".join(sorted({*templates, *broken})) or "none defined"
                self.report.problem(
                    (*path, "template"), f"unknown template {template_name!r} (known: {known})"
                )
            # Still decode the session to report its own mistakes; without a template
            # every merged section would look incomplete, so require nothing.
            self.convert(item, SessionEntry, path, require=False)
            return None, False
        bases = {
            "stt": template.stt,
            "tts": template.tts,
            "livekit": template.livekit,
            "behaviours": template.behaviours,
            "backoff": template.backoff or defaults.backoff,
            "intensity": template.intensity or defaults.intensity,
            "keepalive": template.keepalive or defaults.keepalive,
        }
        entry = self.convert(item, SessionEntry, path, field_bases=bases)
        if not isinstance(entry, SessionEntry):
            return None, False
        spec = build_spec(
            name=entry.name,
            template_name=entry.template,
            template=template,
            defaults=defaults,
            entry=self.absolute_entry(entry),
        )
        for rel, message in spec_problems(spec):
            self.report.problem(
                self.locate(rel, item, path, ("templates", entry.template)), message
            )
        return spec, entry.enabled

    def check_room(
        self, spec: SessionSpec, item: Any, path: KeyPath, rooms: dict[str, tuple[str, int]]
    ) -> None:
        """One LiveKit room per always-on session: the server deletes it at session end."""
        assert spec.livekit is not None
        room = spec.livekit.room_name
        if room is None:
            self.report.problem(
                (*path, "livekit", "room_name"),
                f"required: template {spec.template!r} joins LiveKit but sets no room_name "
                "(set livekit.room_name on the session)",
            )
        elif room in rooms:
            other, other_index = rooms[room]
            where = self.locate(("livekit", "room_name"), item, path, ())
            self.report.problem(
                where if where[:1] == ("sessions",) else path,
                f"LiveKit room {room!r} is already used by session {other!r} "
                f"(sessions[{other_index}]); the server deletes a room when its session ends, "
                "so each session needs its own room",
            )
        else:
            rooms[room] = (spec.name, path[1] if isinstance(path[1], int) else 0)

    def check_inbound(
        self,
        inbound: InboundSettings,
        templates: Mapping[str, Template],
        broken: set[str],
    ) -> None:
        """The webhook's template exists and joins LiveKit (calls arrive in a room)."""
        hook = inbound.sip_webhook
        if hook is None:
            return
        path: KeyPath = ("inbound", "sip_webhook", "template")
        template = templates.get(hook.template)
        if template is None:
            if hook.template not in broken:
                known = ", ".join(sorted({*templates, *broken})) or "none defined"
                self.report.problem(path, f"unknown template {hook.template!r} (known: {known})")
            return
        if template.livekit is None:
            self.report.problem(
                path,
                f"template {hook.template!r} has no livekit section; SIP calls arrive in a "
                "LiveKit room",
            )

    def check_admission(self, admission: AdmissionSettings, inbound: InboundSettings) -> None:
        """``max_sessions`` is set in one place: ``admission`` (or its older name)."""
        hook = inbound.sip_webhook
        if admission.max_sessions is not None and hook is not None and hook.max_sessions:
            self.report.problem(
                ("inbound", "sip_webhook", "max_sessions"),
                "max_sessions is set twice: admission.max_sessions caps every origin "
                "(webhooks, outbound calls, API sessions) and this is its older name; "
                "keep only admission.max_sessions",
            )

    @staticmethod
    def locate(rel: KeyPath, raw: Any, session: KeyPath, template: KeyPath) -> KeyPath:
        """Point a spec problem at the session when it set that key, else at the template."""
        if isinstance(raw, dict) and rel and rel[0] in raw:
            if rel[0] != "behaviours" or len(rel) == 1:
                return (*session, *rel)
            behaviours = raw["behaviours"]
            if isinstance(behaviours, dict) and rel[1] in behaviours:
                return (*session, *rel)
        return (*template, *rel)

    # ---------------------------------------------------------------- relative paths

    def absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(path)))

    def input_file(self, path: str) -> str:
        """A file saynad reads: ``builtin:NAME`` is one shipped with saynad, else as
        :meth:`absolute` (an unknown ``builtin:`` name stays as written and the file
        check reports it)."""
        if path.startswith(BUILTIN_PREFIX):
            with contextlib.suppress(ShippedFileError):
                return str(shipped_path(path.removeprefix(BUILTIN_PREFIX)))
            return path
        return self.absolute(path)

    def absolute_behaviours(self, b: Behaviours) -> Behaviours:
        replace = msgspec.structs.replace
        audio = b.audio
        if audio is not None:
            audio = replace(
                audio,
                source=(
                    replace(audio.source, path=self.input_file(audio.source.path))
                    if audio.source is not None
                    else None
                ),
                sink=(
                    replace(audio.sink, dir=self.absolute(audio.sink.dir))
                    if audio.sink is not None
                    else None
                ),
            )
        sinks = tuple(
            replace(sink, path=self.absolute(sink.path))
            if isinstance(sink, JsonlSinkSettings)
            else sink
            for sink in b.transcripts
        )
        return replace(b, audio=audio, transcripts=sinks)

    def absolute_template(self, t: Template) -> Template:
        loading = t.loading_audio
        if loading is not None:
            loading = msgspec.structs.replace(loading, path=self.input_file(loading.path))
        return msgspec.structs.replace(
            t, loading_audio=loading, behaviours=self.absolute_behaviours(t.behaviours)
        )

    def absolute_entry(self, e: SessionEntry) -> SessionEntry:
        if e.behaviours is None:
            return e
        # Paths inherited from the template are already absolute; joining is idempotent.
        return msgspec.structs.replace(e, behaviours=self.absolute_behaviours(e.behaviours))
