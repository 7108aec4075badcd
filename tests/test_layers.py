"""The package arrows of ARCHITECTURE.md, checked on every import statement of the code.

    feedback        base layer: imports no other package of the project (it locates the
                    `migrations` folder to apply it, the one exception)
    bundle_runtime  the torch-free bundle runtime: imports feedback at most, never torch
    distill_worker  imports feedback and bundle_runtime, never chat_api
    chat_api        imports feedback and bundle_runtime; only the CLI (an entry point) reaches
                    into distill_worker, and nothing on the serving path imports torch
    migrations      imports feedback only

Entry points (chat_api/cli.py, bench/, tests/) may import across. Imports inside functions
count like module-level ones: a lazy import still draws the arrow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"feedback", "bundle_runtime", "chat_api", "distill_worker", "migrations"}
TORCH = {"torch", "transformers", "safetensors", "accelerate", "onnx"}
ENTRY_POINTS = {"chat_api/cli.py"}

# package -> the top-level names it must never import
FORBIDDEN: dict[str, set[str]] = {
    "feedback": PROJECT - {"feedback", "migrations"},
    "bundle_runtime": (PROJECT - {"bundle_runtime", "feedback"}) | TORCH,
    "distill_worker": {"chat_api", "migrations"},
    "chat_api": {"distill_worker", "migrations"} | TORCH,
    "migrations": PROJECT - {"feedback", "migrations"},
}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """(top-level module name, line) of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ENTRY_POINTS or rel.startswith("migrations/versions/"):
            continue
        for name, line in sorted(imported_roots(path)):
            if name in FORBIDDEN[package]:
                bad.append(f"{rel}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_arrows(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def later():\n    from chat_api.app import create_app\n    import torch\n")
    assert imported_roots(module) == {("chat_api", 2), ("torch", 3)}


def test_nothing_outside_the_entry_points_imports_chat_api() -> None:
    importers = [
        f"{path.relative_to(ROOT).as_posix()}:{line}"
        for package in PROJECT - {"chat_api"}
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, line in imported_roots(path)
        if name == "chat_api"
    ]
    assert importers == []


def test_the_runtime_and_the_serving_path_load_without_torch() -> None:
    """Import every bundle_runtime module and the whole API (app, routes, runtime, batcher) in a
    fresh interpreter: neither torch nor distill_worker may end up in sys.modules."""
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in ("bundle_runtime", "chat_api")
        for path in (ROOT / package).rglob("*.py")
        if path.relative_to(ROOT).as_posix() not in ENTRY_POINTS
    )
    assert "bundle_runtime.onnx_student" in modules and "chat_api.app" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(TORCH | {'distill_worker'})!r})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
