"""The folders of pipeline/ are layers (docs/architecture.md): no import points upward, none
forms a circle, and nothing above the codecs names a particular codec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lowest first. A module may import its own layer or lower ones only.
LAYERS: dict[str, int] = {
    "pipeline.errors": 0,
    "pipeline.presets": 1,
    "pipeline.control": 1,
    "pipeline.pixels": 1,
    "pipeline.wire": 2,
    "pipeline.ipc": 2,
    "pipeline.codecs": 3,
    "pipeline.sources": 3,
    "pipeline.jitter": 4,
    "pipeline.stats": 4,
    "pipeline.transport": 4,
    "pipeline.audio": 4,
    "pipeline.stages": 5,
    "pipeline.session": 6,
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "pipeline").rglob("*.py"):
        module = _module(path)
        if module == "pipeline":  # the package's own docstring-only __init__
            continue
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                deps.update(f"{base}.{a.name}" for a in node.names)
                deps.add(base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[module] = {d for d in deps if d.split(".")[0] == "pipeline"}
    known = set(graph)
    # "from pipeline.ipc import ring" names a module; "from pipeline.x import Name" does not.
    return {m: {d for d in deps if d in known and d != m} for m, deps in graph.items()}


GRAPH = _imports()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_points_upward(module: str) -> None:
    upward = [d for d in GRAPH[module] if _layer(d) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports {upward}"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in GRAPH[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])


def test_nothing_above_the_codecs_names_a_codec() -> None:
    """Stages, the session, the stream layer and the edge hold codec objects (the seam)."""
    for module, deps in GRAPH.items():
        if _layer(module) > LAYERS["pipeline.codecs"]:
            named = [d for d in deps if d.startswith("pipeline.codecs.") and d.count(".") > 2]
            assert not named, f"{module} imports a particular codec: {named}"
            path = ROOT / (module.replace(".", "/") + ".py")
            if not path.exists():
                path = ROOT / module.replace(".", "/") / "__init__.py"
            source = path.read_text()
            assert '"jpeg"' not in source.lower() and "jpegerror" not in source.lower(), module
