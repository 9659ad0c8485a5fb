"""The package's import graph: layers with arrows only downward, no cycle (imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fpp_init"

#: the architecture, one entry per module or subpackage: its layer and what it holds. A module may
#: import only from layers <= its own; within a layer only between different subpackages that are
#: listed side by side. The docs' architecture page is drawn from this list (docs/hooks.py).
ARCHITECTURE = {
    "constants": (0, "constants of FPP, the file format, the cache and the Hub"),
    "errors": (0, "FPPError, FPPWarning and their subclasses"),
    "_version": (0, "the version"),
    "_validate": (1, "one validator per concept (no torch)"),
    "_io": (1, "reading and writing files: regular files only, atomic writes, OS errors as one line"),
    "_deps": (1, "optional libraries and the command that installs each"),
    "_hubenv": (1, "the Hub's reachability and offline mode, repository ids"),
    "_launch": (1, "the launcher's environment (torchrun), validated without torch"),
    "config": (2, "FPPConfig and SharpnessConfig: each option defined once"),
    "_runtime": (2, "threads, frozen modules, the caller's RNG kept, tensor-only loading"),
    "plotting": (2, "figures (matplotlib)"),
    "_zoospec": (3, "zoo specs read and checked without torch"),
    "metrics": (3, "calibration metrics"),
    "towers": (3, "text towers from a canonical TowerSpec; fingerprints (know nothing of FPP)"),
    "algorithm": (4, "the FPP optimiser and the sharpness maths, on one feature path (no files, no Hub)"),
    "models": (5, "CLIP models of every library -> TextModel"),
    "artifacts": (5, "prompt files, the cache, the Hub, exports"),
    "adapters": (5, "one module per prompt-learner design of live TPT-family models"),
    "api": (6, "the front doors: validate, then use the layers below"),
    "cli": (7, "the fpp-init command: argparse front end, one-line errors"),
    "__init__": (8, "the public names, loaded on first use"),
    "__main__": (8, "python -m fpp_init"),
}
LAYERS = {unit: level for unit, (level, _) in ARCHITECTURE.items()}
# the three middle rooms know nothing of each other
SIBLINGS_APART = {"models", "artifacts", "adapters"}


def _unit(module: str) -> str:
    """``fpp_init.towers.causal`` -> ``towers``; ``fpp_init._io`` -> ``_io``; ``fpp_init`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every fpp_init module ``path`` imports, anywhere in the file (functions and TYPE_CHECKING blocks too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fpp_init"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fpp_init"):
                for a in node.names:  # `from . import x` imports module x; `from .m import f` imports m
                    found.add(f"{target}.{a.name}" if _exists(f"{target}.{a.name}") else target)
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) - {_module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer() -> None:
    assert {_unit(m) for m in _graph()} <= set(LAYERS)


def test_arrows_only_downward() -> None:
    upward = []
    for module, targets in _graph().items():
        src = _unit(module)
        for target in targets:
            dst = _unit(target)
            if src == dst or (dst == "__init__" and src in ("__main__",)):
                continue
            if LAYERS[dst] > LAYERS[src] or (src in SIBLINGS_APART and dst in SIBLINGS_APART):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    graph = _graph()
    # a package's __init__ re-exports its submodules: edges from a package to its own children are not cycles
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_adapters_never_import_the_pip_clip_package() -> None:
    for path in (PACKAGE / "adapters").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            assert "clip" not in names and mod != "clip" and "models" not in (mod or ""), path
