"""From plain values to the typed, frozen Structs of the schema, every problem reported.

msgspec alone stops at the first error of a document. :class:`Converter` walks the
schema's types itself (Structs, tagged unions, tuples, mappings, secrets) and hands only
scalars to :func:`msgspec.convert`, so one bad value is reported at its own key path
without hiding the next one. A Struct that decodes runs its own cross-field checks
(``Settings._problems``) and the checks on its fields' types (``Check``). ``base`` and
``field_bases`` fill in what the data leaves out: that is how a session's partial
``stt`` or ``backoff`` mapping is merged over its template's.
"""

from __future__ import annotations

import difflib
import math
import types
from collections.abc import Mapping
from typing import Annotated, Any, Final, Union, get_args
from typing import get_origin as _get_origin

import msgspec

from saynad.config._report import (
    BAD,
    INVALID,
    KeyPath,
    Report,
    describe_type,
    describe_value,
    is_number,
    literal_choices,
    unannotated,
    unknown_key_message,
)
from saynad.config._schema import Settings
from saynad.config._secrets import Ref
from saynad.config._values import Check, FrozenMap, LiteralAllowed, Secret

__all__ = ["Converter"]

_NONE_TYPE: Final = type(None)


class Converter:
    """Decodes values into schema types for one load, reporting into ``report``."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def convert(
        self,
        data: Any,
        tp: Any,
        path: KeyPath,
        *,
        base: Any = None,
        field_bases: Mapping[str, Any] | None = None,
        require: bool = True,
    ) -> Any:
        """Decode ``data`` as ``tp``; report every problem; return ``INVALID`` on failure.

        ``base`` (a Struct of type ``tp``) supplies the fields ``data`` leaves out;
        ``field_bases`` does the same one level down (the session-over-template merge).
        """
        if data is BAD:
            return INVALID
        origin = _get_origin(tp)
        if origin is Annotated:
            inner, *meta = get_args(tp)
            if inner is Secret:
                literal = any(isinstance(m, LiteralAllowed) for m in meta)
                value = self.convert_secret(data, path, literal)
            else:
                value = self.convert_scalar(data, tp, path)
            for check in (m for m in meta if isinstance(m, Check)):
                problem = None if value is INVALID else check.check(value)
                if problem:
                    if isinstance(data, Ref) and data:
                        # Checks quote the bad value; a resolved one is shown by reference.
                        problem = problem.replace(str(data), data.reference)
                    self.report.problem(path, problem)
                    value = INVALID
            return value
        if origin in (Union, types.UnionType):
            return self.convert_union(data, tp, path, base=base, require=require)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return self.convert_struct(
                data, tp, path, base=base, field_bases=field_bases, require=require
            )
        if origin is tuple:
            return self.convert_list(data, tp, path, require=require)
        if origin in (Mapping, dict):
            return self.convert_mapping(data, tp, path, require=require)
        if tp is Secret:
            return self.convert_secret(data, path, False)
        return self.convert_scalar(data, tp, path)

    def convert_union(self, data: Any, tp: Any, path: KeyPath, *, base: Any, require: bool) -> Any:
        members = [arg for arg in get_args(tp) if arg is not _NONE_TYPE]
        if data is None and len(members) < len(get_args(tp)):
            return None
        if len(members) == 1:
            return self.convert(data, members[0], path, base=base, require=require)
        tags = {
            m.__struct_config__.tag: m
            for m in members
            if isinstance(m, type) and issubclass(m, msgspec.Struct)
        }
        if len(tags) != len(members):
            # A union of scalars (none in the schema today): msgspec picks the member.
            return self.convert_scalar(data, tp, path)
        tag_field = members[0].__struct_config__.tag_field
        expected = ", ".join(str(t) for t in tags)
        if not isinstance(data, dict):
            self.report.problem(
                path,
                f"expected a mapping with a {tag_field} (one of: {expected}), "
                f"got {describe_value(data)}",
            )
            return INVALID
        if tag_field not in data:
            self.report.problem(path, f"missing required key {tag_field!r} (one of: {expected})")
            return INVALID
        kind = data[tag_field]
        if kind is BAD:
            return INVALID
        member = tags.get(kind) if isinstance(kind, str) else None
        if member is None:
            self.report.problem(
                (*path, tag_field),
                f"unknown {tag_field} {describe_value(kind)} (expected one of: {expected})",
            )
            return INVALID
        return self.convert(data, member, path, require=require)

    def convert_struct(
        self,
        data: Any,
        tp: type[msgspec.Struct],
        path: KeyPath,
        *,
        base: Any,
        field_bases: Mapping[str, Any] | None,
        require: bool,
    ) -> Any:
        if not isinstance(data, dict):
            self.report.problem(path, f"expected a mapping, got {describe_value(data)}")
            return INVALID
        fields = msgspec.structs.fields(tp)
        tag_field = tp.__struct_config__.tag_field
        names = [f.name for f in fields]
        for key in data:
            if key not in names and key != tag_field:
                kind = tp.__struct_config__.tag
                context = f" for {tag_field} {kind!r}" if kind is not None else ""
                self.report.problem((*path, key), unknown_key_message(key, names, context))
        values: dict[str, Any] = {}
        ok = True
        for f in fields:
            if f.name in data:
                value = self.convert(
                    data[f.name],
                    f.type,
                    (*path, f.name),
                    base=(field_bases or {}).get(f.name),
                    require=require,
                )
                if value is INVALID:
                    ok = False
                else:
                    values[f.name] = value
            elif base is not None:
                values[f.name] = getattr(base, f.name)
            elif f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT:
                if require:
                    self.report.problem(path, f"missing required key {f.name!r}")
                ok = False
        if not ok:
            return INVALID
        result = tp(**values)
        if isinstance(result, Settings):
            for rel, message in result._problems():
                self.report.problem((*path, *rel), message)
        return result

    def convert_list(self, data: Any, tp: Any, path: KeyPath, *, require: bool) -> Any:
        item_type = get_args(tp)[0]
        if not isinstance(data, list):
            self.report.problem(path, f"expected a list, got {describe_value(data)}")
            return INVALID
        items = [
            self.convert(item, item_type, (*path, i), require=require)
            for i, item in enumerate(data)
        ]
        return INVALID if any(item is INVALID for item in items) else tuple(items)

    def convert_mapping(self, data: Any, tp: Any, path: KeyPath, *, require: bool) -> Any:
        value_type = get_args(tp)[1]
        if not isinstance(data, dict):
            self.report.problem(path, f"expected a mapping, got {describe_value(data)}")
            return INVALID
        items = {
            key: self.convert(value, value_type, (*path, key), require=require)
            for key, value in data.items()
        }
        if any(value is INVALID for value in items.values()):
            return INVALID
        return FrozenMap(items)

    def convert_secret(self, data: Any, path: KeyPath, literal_allowed: bool) -> Any:
        if isinstance(data, Ref):
            return Secret(str(data))
        if isinstance(data, str) and literal_allowed:
            return Secret(data)
        if isinstance(data, str):
            self.report.problem(
                path,
                "secrets must not be written in the file: use ${env:NAME}, "
                "${file:/absolute/path} or ${credential:NAME}",
            )
        else:
            expected = "a string" if literal_allowed else "a secret reference such as ${env:NAME}"
            self.report.problem(
                path, f"expected {expected}, got {describe_value(data, secret=True)}"
            )
        return INVALID

    def convert_scalar(self, data: Any, tp: Any, path: KeyPath) -> Any:
        plain = str(data) if isinstance(data, Ref) else data
        try:
            value = msgspec.convert(plain, tp)
        except msgspec.ValidationError:
            # msgspec only ever sees one scalar here (containers and Structs are walked
            # above), so its message adds nothing to ours: the path is always `$`.
            self.report.problem(path, self.scalar_message(data, tp, path))
            return INVALID
        if isinstance(value, float) and not math.isfinite(value):
            self.report.problem(path, f"expected {describe_type(tp)}, got {describe_value(data)}")
            return INVALID
        return value

    @staticmethod
    def scalar_message(data: Any, tp: Any, path: KeyPath) -> str:
        message = f"expected {describe_type(tp)}, got {describe_value(data)}"
        literal = literal_choices(tp)
        if literal and isinstance(data, str):
            close = difflib.get_close_matches(data, [str(c) for c in literal], n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        key = path[-1] if path else ""
        if isinstance(key, str) and key.endswith("_s") and isinstance(data, str):
            message += "; durations are plain numbers of seconds, e.g. 10 or 0.5"
        elif isinstance(data, str) and is_number(data) and unannotated(tp) in (int, float):
            message += " (remove the quotes)"
        return message
