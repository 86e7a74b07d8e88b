"""The layers, enforced: a module imports only from layers below its own.

Every ``import instructkit...`` in ``src/`` counts, at module level or inside a function (a
lazy import is still a dependency), under ``TYPE_CHECKING`` too. The package ``__init__`` is
the curated facade over everything and is exempt. Siblings in one layer (synth, train,
evaluate) do not import each other; what two of them need goes below both.

``python tests/unit/test_layers.py`` prints the package-level import graph as Mermaid; the
copy in ``docs/architecture.md`` is checked against it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "instructkit"

# Bottom to top. Modules in one tuple share a layer; "siblings" may not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("io",),
    ("jobs",),
    ("config",),
    ("models", "losses"),
    ("data",),
    ("lm",),
    ("synth", "train", "evaluate"),
    ("rl",),
    ("optimize",),
    ("report",),
    ("demo", "recipe"),
    ("cli",),
    ("__main__",),
)
SIBLINGS = {"synth", "train", "evaluate"}
EXEMPT = {"__init__", "resources"}  # the lazy public facade; package data
FACADE_USERS = {"cli", "__main__"}  # the top may read the facade (e.g. __version__)


def layer_of(unit: str) -> int:
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level
    raise KeyError(f"'{unit}' is in no layer: add it to LAYERS (and docs/architecture.md)")


def unit_of(module: str) -> str:
    """'instructkit.data.tokenize' -> 'data'; 'instructkit' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, src: Path) -> Iterator[tuple[int, str]]:
    """(line, imported instructkit module) for every import in the file."""
    me = module_name(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "instructkit":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "instructkit":
                continue
            if target == "instructkit":  # from instructkit import data -> instructkit.data
                for alias in node.names:
                    sub = src / alias.name
                    is_module = sub.is_dir() or sub.with_suffix(".py").exists()
                    yield node.lineno, f"instructkit.{alias.name}" if is_module else target
            else:
                yield node.lineno, target


def violations(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        me = unit_of(module_name(path, src))
        if me in EXEMPT:
            continue
        for line, target in imports_of(path, src):
            other = unit_of(target)
            if other == me or (other == "__init__" and me in FACADE_USERS):
                continue
            where = f"{path.relative_to(src.parent)}:{line}"
            if other == "__init__":
                found.append(f"{where}: imports the facade 'instructkit'; import the module")
            elif layer_of(other) > layer_of(me):
                found.append(
                    f"{where}: {me} (layer {layer_of(me)}) imports {target} (layer "
                    f"{layer_of(other)}), a layer above it"
                )
            elif layer_of(other) == layer_of(me) and {me, other} <= SIBLINGS:
                found.append(
                    f"{where}: {me} imports its sibling {target}; move what both need "
                    "into a layer below"
                )
            elif layer_of(other) == layer_of(me):
                found.append(f"{where}: {me} imports {target} of the same layer")
    return found


def graph(src: Path = SRC) -> str:
    """Mermaid flowchart of package-level imports (an edge A --> B: A imports B)."""
    edges = set()
    for path in sorted(src.rglob("*.py")):
        me = unit_of(module_name(path, src))
        if me in EXEMPT:
            continue
        for _, target in imports_of(path, src):
            other = unit_of(target)
            if other != me and other not in EXEMPT:
                edges.add((me, other))
    lines = ["flowchart BT"]
    lines += [f"  {a} --> {b}" for a, b in sorted(edges, key=lambda e: (-layer_of(e[0]), e))]
    return "\n".join(lines)


def test_no_module_imports_upward_or_sideways():
    problems = violations()
    assert not problems, "layer violations:\n" + "\n".join(problems)


def test_a_planted_violation_is_caught(tmp_path):
    pkg = tmp_path / "instructkit"
    (pkg / "data").mkdir(parents=True)
    (pkg / "evaluate").mkdir()
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "bad.py").write_text("def f():\n    from instructkit.lm.base import LM\n")
    (pkg / "evaluate" / "x.py").write_text("from ..train import loop\n")
    (pkg / "config.py").write_text("from instructkit.data import io\n")
    found = violations(pkg)
    assert len(found) == 3, found
    assert "data/bad.py:2: data (layer 5) imports instructkit.lm.base (layer 6)" in found[1]
    assert "config.py:1: config (layer 3) imports instructkit.data" in found[0]
    assert "evaluate imports its sibling instructkit.train" in found[2]


def test_only_optimize_imports_dspy():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if unit_of(module_name(path, SRC)) == "optimize":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] == "dspy"]
    assert not found, f"dspy is imported outside instructkit.optimize: {found}"


def test_every_layer_edge_points_down():
    for line in graph().splitlines()[1:]:
        a, _, b = line.strip().partition(" --> ")
        assert layer_of(a) > layer_of(b), line


def test_architecture_doc_shows_the_current_import_graph():
    doc = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    assert graph() in doc, (
        "docs/architecture.md's import graph is stale: paste the output of "
        "`python tests/unit/test_layers.py` into it"
    )


if __name__ == "__main__":
    sys.stdout.write(graph() + "\n")
