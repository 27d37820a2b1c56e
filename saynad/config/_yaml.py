"""From YAML text to plain Python values, every value's line recorded.

PyYAML only composes the nodes; :class:`Reader` walks them itself, which is where each
key path's line goes into the :class:`~saynad.config._report.Report`, duplicate keys
are refused (PyYAML keeps the last one silently), ``<<`` merges and aliases are checked,
the size and depth of the document are bounded, and a whole-scalar reference
(``${env:…}``) is resolved by :class:`~saynad.config._secrets.References`. A value that
cannot be read is reported and left as :data:`~saynad.config._report.BAD`, so the
values around it are still read and decoded.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from saynad.config._report import BAD, KeyPath, Report, describe_value
from saynad.config._secrets import References, Unresolved

__all__ = ["EMPTY", "MAX_DEPTH", "MAX_NODES", "Reader"]

MAX_DEPTH: Final = 64
MAX_NODES: Final = 100_000
_MAX_COMPOSED_NODES: Final = 2 * MAX_NODES + 1_000  # a mapping's keys are nodes too

EMPTY: Final = object()
"""What :meth:`Reader.read` returns for a document with no content at all."""

_REFERENCE: Final = re.compile(r"\$\{([^{}]*)\}")
_EMBEDDED_REFERENCE: Final = re.compile(r"\$\{(?:env|file|credential):")
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_MAX_INT: Final = 2**63 - 1
_MAX_INT_DIGITS: Final = 19  # the digits of _MAX_INT (hex, octal and binary: fewer still)


class _TooManyNodes(yaml.YAMLError):
    """Composing stopped: the document has more nodes than the loader builds."""


class _ScalarError(Exception):
    """A YAML scalar could not be built (bad tag or malformed typed value)."""


class _YamlLoader(yaml.SafeLoader):
    """The safe loader, used only to compose nodes and to build scalars.

    The config loader walks the node graph itself: that is where every value's line is
    recorded and duplicate keys are refused (PyYAML keeps the last one silently).
    Composing stops at :data:`_MAX_COMPOSED_NODES` nodes (keys and values), so a huge
    document costs a bounded amount of time and memory before it is refused (not the
    whole file's node graph).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.composed += 1
        if self.composed > _MAX_COMPOSED_NODES:
            raise _TooManyNodes(f"the document expands to more than {MAX_NODES} values")
        return super().compose_node(parent, index)


class Reader:
    """Reads one document into plain values, reporting every problem it meets."""

    def __init__(self, report: Report, references: References) -> None:
        self.report = report
        self.references = references
        self._yaml: _YamlLoader | None = None
        self._own_keys: dict[int, set[int]] = {}
        self._active: set[int] = set()
        self._nodes = 0

    def read(self, text: str) -> Any:
        """The document's values; :data:`EMPTY` when it has none, :data:`BAD` when it
        could not be read (the reason is reported)."""
        data: Any = BAD
        try:
            self._yaml = _YamlLoader(text)
            try:
                node = self._yaml.get_single_node()
                data = self.build(node, ()) if node is not None else EMPTY
            finally:
                self._yaml.dispose()
        except _TooManyNodes as exc:
            self.report.problem((), str(exc), line=1)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = exc.problem or str(exc)
            if exc.context and exc.context_mark is not None:
                context_line = exc.context_mark.line + 1
                if what.startswith("but "):  # PyYAML phrases some as "expected X … but Y"
                    what = f"{exc.context} (line {context_line}), {what}"
                else:
                    what += f" ({exc.context} at line {context_line})"
            self.report.problem((), f"invalid YAML: {what}", line=line)
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            character = chr(exc.character) if isinstance(exc.character, int) else exc.character
            self.report.problem((), f"invalid YAML: {exc.reason} ({character!r})", line=line)
        except yaml.YAMLError as exc:
            self.report.problem((), f"invalid YAML: {exc}", line=1)
        except RecursionError:
            self.report.problem((), "the document nests too deeply", line=1)
        return data

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        """Turn a node into plain values, recording the line of every path."""
        self.report.lines.setdefault(path, node.start_mark.line + 1)
        self._nodes += 1
        if self._nodes == MAX_NODES:
            self.report.problem(path, f"the document expands to more than {MAX_NODES} values")
        if self._nodes >= MAX_NODES:
            return BAD
        if len(path) > MAX_DEPTH:
            self.report.problem(path, f"the document nests more than {MAX_DEPTH} levels deep")
            return BAD
        if id(node) in self._active:
            self.report.problem(path, "recursive YAML alias")
            return BAD
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.build_mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    self.report.problem(path, f"unsupported YAML tag {node.tag!r}")
                    return BAD
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.ScalarNode)
            return self.build_scalar(node, path)
        finally:
            self._active.discard(id(node))

    def build_mapping(self, node: yaml.MappingNode, path: KeyPath) -> Any:
        assert self._yaml is not None
        if node.tag != _MAP_TAG:
            self.report.problem(path, f"unsupported YAML tag {node.tag!r}")
            return BAD
        own = self._own_keys.get(id(node))
        if own is None:
            # Remember which keys the mapping itself wrote before `<<` merges are inlined
            # (flattening rewrites the node in place; an alias may visit it again).
            own = {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
            self._own_keys[id(node)] = own
            if len(own) != len(node.value):
                try:
                    self._yaml.flatten_mapping(node)
                except yaml.MarkedYAMLError as exc:
                    mark = exc.problem_mark
                    self.report.problem(
                        path, f"invalid merge: {exc.problem}", line=mark.line + 1 if mark else None
                    )
                    return BAD
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = self.scalar_key(key_node, path)
            if key is None:
                continue
            if id(key_node) in own:
                if key in first_line:
                    self.report.problem(
                        (*path, key),
                        f"duplicate key {key!r} (first defined at line {first_line[key]})",
                        line=key_line,
                    )
                    continue
                first_line[key] = key_line
            self.report.lines[(*path, key)] = key_line
            result[key] = self.build(value_node, (*path, key))
        return result

    def scalar_key(self, node: yaml.Node, path: KeyPath) -> str | None:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode):
            self.report.problem(path, "mapping keys must be plain strings", line=line)
            return None
        try:
            key = self.construct_scalar(node)
        except _ScalarError as exc:
            self.report.problem(path, str(exc), line=line)
            return None
        if not isinstance(key, str):
            self.report.problem(
                path,
                f"mapping keys must be strings, got {describe_value(key)} (quote it)",
                line=line,
            )
            return None
        return key

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:
        assert self._yaml is not None
        if node.tag == _INT_TAG:
            digits = sum(c.isalnum() for c in node.value)
            if digits > _MAX_INT_DIGITS:
                raise _ScalarError(
                    f"the integer has {digits} digits; saynad takes integers of at most "
                    f"{_MAX_INT_DIGITS} digits"
                )
        try:
            value = self._yaml.construct_object(node, deep=True)
        except Exception as exc:
            # PyYAML's scalar constructors raise ConstructorError, ValueError (a timestamp
            # with month 13), OverflowError…; each simply means "not a valid YAML value".
            detail = getattr(exc, "problem", None) or str(exc)
            raise _ScalarError(f"invalid YAML value: {detail}") from exc
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT:
            raise _ScalarError(f"the integer {value} is too large; at most {_MAX_INT}")
        return value

    def build_scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        try:
            value = self.construct_scalar(node)
        except _ScalarError as exc:
            self.report.problem(path, str(exc))
            return BAD
        if not isinstance(value, str):
            return value
        match = _REFERENCE.fullmatch(value)
        if match is not None:
            return self.resolve_reference(match.group(1), path)
        if _EMBEDDED_REFERENCE.search(value):
            self.report.problem(
                path,
                "a ${…} reference must be the whole value, not part of a string; "
                "put the complete value (e.g. 'Bearer …') in the secret",
            )
            return BAD
        return value

    def resolve_reference(self, body: str, path: KeyPath) -> Any:
        value = self.references.resolve(body)
        if isinstance(value, Unresolved):
            self.report.problem(path, str(value))
            return BAD
        return value
