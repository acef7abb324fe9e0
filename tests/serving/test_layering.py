"""The serving side's structure, read from its imports: one runner interface that no front end
looks behind, batching that knows no runner, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

SERVING = ROOT / "serving"
FRONT_ENDS = sorted(p.stem for p in (SERVING / "services").glob("*.py") if p.stem != "__init__")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def run_time_imports(path: Path) -> set[str]:
    """Modules imported when the file runs (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def serving_modules() -> dict[str, set[str]]:
    paths = [p for p in SERVING.rglob("*.py") if "generated" not in p.parts]
    names = {module_name(p) for p in paths}
    return {module_name(p): {m for m in run_time_imports(p) if m in names} for p in paths}


def test_front_ends_use_only_the_runner_interface():
    for name in FRONT_ENDS:
        imports = run_time_imports(SERVING / "services" / f"{name}.py")
        runners = {m for m in imports if m.startswith("serving.runners")}
        assert runners <= {"serving.runners.base", "serving.runners.base.Runner",
                           "serving.runners.base.Tensors", "serving.runners.base.Parameters",
                           "serving.runners.base.RunnerStats",
                           "serving.runners.base.Duration"}, (name, runners)
        source = (SERVING / "services" / f"{name}.py").read_text()
        assert "isinstance(runner" not in source, name


def test_batching_imports_no_runner():
    assert not {m for m in run_time_imports(SERVING / "batching.py")
                if m.startswith("serving.runners")}


def test_no_import_cycle_in_serving():
    graph = serving_modules()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in graph.get(module, ()):
            # importing a package runs its __init__, but a module of it is not a cycle with it
            if state.get(dep) == 1 and not module.startswith(dep + "."):
                raise AssertionError(" -> ".join([*path, module, dep]))
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_training_imports_no_benchmark():
    """The trainer image ships training/ and serving/ only: bench/ builds on them, not under."""
    for path in (ROOT / "training").rglob("*.py"):
        assert not {m for m in run_time_imports(path) if m.split(".")[0] == "bench"}, path
