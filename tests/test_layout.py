"""The package's import graph: no module imports another that imports it back (also not from inside a function),
nothing below `pocketvit.pipeline` imports it, `pocketvit.runtime` imports nothing else of the package (and no torch),
and no private name crosses a package boundary."""

from __future__ import annotations

import ast
from pathlib import Path

SDK = Path(__file__).resolve().parents[1] / "sdk"
PKG = SDK / "pocketvit"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(SDK).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, name taken from it or None)} over every import statement, at any depth."""
    graph: dict[str, set[tuple[str, str | None]]] = {m: set() for m in mods}
    for mod, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("pocketvit"):
                        graph[mod].add((_nearest(a.name, mods), None))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                if not base.startswith("pocketvit"):
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in mods:
                        graph[mod].add((sub, None))
                    else:
                        graph[mod].add((_nearest(base, mods), a.name))
    return graph


def _nearest(name: str, mods: dict[str, Path]) -> str:
    while name not in mods and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _edges() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t, _ in deps if t != m} for m, deps in _imports(mods).items()}


def test_no_import_cycles():
    assert _cycles(_edges()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_pipeline_imports_it():
    upward = {m: sorted(t for t in deps if t.startswith("pocketvit.pipeline"))
              for m, deps in _edges().items() if not m.startswith(("pocketvit.pipeline", "pocketvit.cli"))}
    assert {m: d for m, d in upward.items() if d} == {}


def test_runtime_stands_alone():
    allowed = ("pocketvit.runtime", "pocketvit.errors")
    outside = {m: sorted(t for t in deps if not t.startswith(allowed) and t != "pocketvit")
               for m, deps in _edges().items() if m.startswith("pocketvit.runtime")}
    assert {m: d for m, d in outside.items() if d} == {}
    for f in (PKG / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f


def test_no_private_name_crosses_packages():
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    crossing = sorted(
        f"{m} takes {name} from {t}"
        for m, deps in _imports(_modules()).items()
        for t, name in deps
        if name and name.startswith("_") and not name.startswith("__") and package(t) != package(m)
    )
    assert crossing == []
