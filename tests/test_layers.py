"""The layers drawn in docs/architecture.md, enforced on every import in saynad/.

Each module belongs to a unit (a package such as ``saynad.client``, or a module such
as ``saynad.errors``); units sit in layers. An import may point to the importer's own
unit or down to a lower layer, never up and never sideways to another unit of the same
layer (the client and the emulator do not know each other). On top of that: no unit
imports another unit's private modules (``saynad.client._wsproto`` is the client's
own), the modules of saynad form no import cycle, and the protocol layer stays sans-IO.

Imports are read from the source (all of them: module level, inside functions, under
``TYPE_CHECKING``), so a violation is caught without importing anything.

:data:`KNOWN_VIOLATIONS` lists the upward imports the codebase still has, each with
why it is there; a test fails when one of them is fixed, so the list only shrinks.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import saynad

ROOT = Path(saynad.__file__).parent

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("entry points", frozenset({"saynad", "saynad.__main__"})),
    ("executable", frozenset({"saynad._launch"})),
    ("command line", frozenset({"saynad.cli"})),
    ("daemon", frozenset({"saynad.app"})),
    ("daemon services", frozenset({"saynad.http", "saynad.runtime_gc", "saynad.systemd"})),
    ("call control", frozenset({"saynad.http_api"})),
    ("actors", frozenset({"saynad.actors"})),
    ("client and server", frozenset({"saynad.client", "saynad.emulator"})),
    (
        "configuration and observability",
        frozenset({"saynad.config", "saynad.observability", "saynad.api"}),
    ),
    (
        "foundations",
        frozenset(
            {
                "saynad.protocol",
                "saynad._io",
                "saynad._groups",
                "saynad.paths",
                "saynad._early_signals",
                "saynad.sharding",
            }
        ),
    ),
    ("leaves", frozenset({"saynad.errors", "saynad._version", "saynad.shipped"})),
)
"""Top to bottom, as drawn in docs/architecture.md."""

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}
"""(importing unit, imported unit) → why the upward import is still there."""

IO_LIBRARIES = frozenset(
    {"trio", "httpx", "trio_websocket", "hypercorn", "h11", "wsproto", "asyncio", "anyio"}
)
"""What the sans-IO protocol layer never imports."""

PROTOCOL_THIRD_PARTY = frozenset({"msgspec", "websockets"})
"""The only libraries outside the standard library the protocol layer may import
(``websockets`` for its compiled masking routine alone)."""


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # module name (a module of saynad, or any top-level name)
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def resolve(name: str) -> str:
    """The module of saynad behind ``name`` (a module, or a name inside one)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports() -> Iterator[Import]:
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # ``from package import submodule`` imports the submodule.
                targets = [f"{base}.{alias.name}" for alias in node.names] if base else []
                if not any(resolve(t) != resolve(base) for t in targets):
                    targets = [base]
            for target in targets:
                if target.split(".")[0] == "saynad":
                    target = resolve(target)
                yield Import(module, target, path, node.lineno)


IMPORTS = list(imports())
INTERNAL = [i for i in IMPORTS if i.target.split(".")[0] == "saynad"]


def unit(module: str) -> str:
    """The unit a module belongs to: the longest declared name that contains it (the
    package's own namespace, ``saynad``, contains no other module)."""
    units = [
        u
        for _, us in LAYERS
        for u in us
        if module == u or (u != "saynad" and module.startswith(u + "."))
    ]
    assert units, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return max(units, key=len)


def rank(u: str) -> int:
    return next(i for i, (_, units) in enumerate(LAYERS) if u in units)


def upward_imports(imps: list[Import]) -> dict[tuple[str, str], list[Import]]:
    """Imports up or sideways, by (importing unit, imported unit)."""
    found: dict[tuple[str, str], list[Import]] = {}
    for imp in imps:
        src, dst = unit(imp.importer), unit(imp.target)
        if src != dst and rank(dst) <= rank(src):
            found.setdefault((src, dst), []).append(imp)
    return found


def private_imports(imps: list[Import]) -> list[Import]:
    """Imports of a unit's private module (``_name``) from outside its package."""
    found = []
    for imp in imps:
        parts = imp.target.split(".")
        for depth in range(2, len(parts)):
            if parts[depth].startswith("_") and not parts[depth].startswith("__"):
                owner = ".".join(parts[:depth])
                if not (imp.importer == owner or imp.importer.startswith(owner + ".")):
                    found.append(imp)
                    break
    return found


def import_cycles(imps: list[Import]) -> list[list[str]]:
    """The import cycles among modules, each as its sorted members."""
    graph: dict[str, set[str]] = {}
    for imp in imps:
        graph.setdefault(imp.target, set())
        if imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    return [c for c in strongly_connected(graph) if len(c) > 1]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


# --------------------------------------------------------------------------- the tests


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        unit(module)


def test_imports_point_down_the_layers() -> None:
    problems = [
        f"{imp.where()}: {imp.importer} imports {imp.target} "
        f"({LAYERS[rank(src)][0]} → {LAYERS[rank(dst)][0]})"
        for (src, dst), imps in sorted(upward_imports(INTERNAL).items())
        if (src, dst) not in KNOWN_VIOLATIONS
        for imp in imps
    ]
    assert not problems, "imports up or across the layers:\n" + "\n".join(problems)


def test_known_violations_are_still_there() -> None:
    """When an upward import is fixed, its entry goes from KNOWN_VIOLATIONS."""
    fixed = sorted(set(KNOWN_VIOLATIONS) - set(upward_imports(INTERNAL)))
    assert not fixed, f"fixed, remove from KNOWN_VIOLATIONS: {fixed}"


def test_private_modules_stay_inside_their_package() -> None:
    problems = [f"{i.where()}: {i.importer} imports {i.target}" for i in private_imports(INTERNAL)]
    assert not problems, "private modules imported from outside:\n" + "\n".join(problems)


def test_modules_form_no_import_cycle() -> None:
    """Cycles through a known upward import are that import's; any other is new."""
    known = set(KNOWN_VIOLATIONS)
    new = [
        cycle
        for cycle in import_cycles(INTERNAL)
        if not {(unit(a), unit(b)) for a in cycle for b in cycle} & known
    ]
    assert new == []


def test_protocol_imports_only_the_standard_library_and_msgspec() -> None:
    problems = []
    for imp in IMPORTS:
        if unit(imp.importer) != "saynad.protocol":
            continue
        top = imp.target.split(".")[0]
        if top in IO_LIBRARIES or not (
            top in sys.stdlib_module_names or top in PROTOCOL_THIRD_PARTY or top == "saynad"
        ):
            problems.append(f"{imp.where()}: {imp.target}")
    assert not problems


def test_protocol_layer_is_sans_io() -> None:
    """Importing the whole protocol layer pulls in none of the I/O libraries."""
    protocol = sorted(m for m in MODULES if unit(m) == "saynad.protocol")
    code = (
        "import importlib, sys\n"
        f"for name in {protocol!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in {sorted(IO_LIBRARIES)!r} if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_the_layers_are_the_ones_drawn_in_the_docs() -> None:
    """docs/architecture.md's layer table and :data:`LAYERS` are the same, row by row."""
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = section.split("| layer | units |", 1)[1].split("\n\n", 1)[0]
    drawn = [
        (cells[1].strip(), frozenset(re.findall(r"`([^`]+)`", cells[2])))
        for line in table.strip().splitlines()[1:]  # after the |---| row
        if (cells := line.split("|"))
    ]
    short = [(name, frozenset(u.removeprefix("saynad.") for u in units)) for name, units in LAYERS]
    assert drawn == short


def fake(importer: str, target: str) -> Import:
    return Import(importer, target, ROOT / "x.py", 1)


def test_the_checks_see_each_kind_of_violation() -> None:
    """The checks above, on imports made up for the purpose."""
    assert set(upward_imports([fake("saynad._io.pacing", "saynad.client.session")])) == {
        ("saynad._io", "saynad.client")
    }
    assert set(upward_imports([fake("saynad.emulator.ws", "saynad.client.pacing")])) == {
        ("saynad.emulator", "saynad.client")
    }
    assert upward_imports([fake("saynad.client.session", "saynad._io.pacing")]) == {}
    assert upward_imports([fake("saynad.client.session", "saynad.client.transport")]) == {}
    private = [
        fake("saynad.emulator.server", "saynad.client._wsproto"),
        fake("saynad.client.transport", "saynad.client._wsproto"),
        fake("saynad.client.transport", "saynad._io.sockets"),
    ]
    assert private_imports(private) == private[:1]
    cyclic = [
        fake("saynad.emulator.app", "saynad.emulator.ws"),
        fake("saynad.emulator.ws", "saynad.emulator.app"),
        fake("saynad.emulator.ws", "saynad.emulator.state"),
    ]
    assert import_cycles(cyclic) == [["saynad.emulator.app", "saynad.emulator.ws"]]
    assert import_cycles(cyclic[1:]) == []
    assert unit("saynad") == "saynad"
    assert unit("saynad.client._wsproto") == "saynad.client"
    with pytest.raises(AssertionError, match="in no layer"):
        unit("saynad.newcomer")  # a new module needs a place in the table
