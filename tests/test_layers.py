"""The package arrows of ARCHITECTURE.md, checked on every import statement of the code.

    feedback        base layer: imports no other package of the project (it locates the
                    `migrations` folder to apply it, the one exception)
    bundle_runtime  the torch-free bundle runtime: imports feedback at most, never torch
    distill_worker  imports feedback and bundle_runtime, never chat_api
    chat_api        imports feedback and bundle_runtime; only the CLI (an entry point) reaches
                    into distill_worker, and nothing on the serving path imports torch
    migrations      imports feedback only

Entry points (chat_api/cli.py, bench/, tests/) may import across, and only through the front
door: chat_api/cli.py adds distill_worker's commands from its CLI modules, when they are called.
Inside distill_worker, the loop (`loop/`) is logic that runs without the Celery app: only the
tasks and the worker CLI start it. Test modules import shared fixtures from tests/fixtures/,
never another test module, and the serving tests load without torch.

Imports inside functions count like module-level ones: a lazy import still draws the arrow.
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
# What the `chatdistill` group (chat_api/cli.py) may import from distill_worker: its CLI modules.
WORKER_CLI_MODULES = {
    "distill_worker.cli",
    "distill_worker.eval_cli",
    "distill_worker.ood_cli",
    "distill_worker.worker_cli",
}
CELERY_APP = {"distill_worker.celery_app", "distill_worker.tasks"}

# package -> the top-level names it must never import
FORBIDDEN: dict[str, set[str]] = {
    "feedback": PROJECT - {"feedback", "migrations"},
    "bundle_runtime": (PROJECT - {"bundle_runtime", "feedback"}) | TORCH,
    "distill_worker": {"chat_api", "migrations"},
    "chat_api": {"distill_worker", "migrations"} | TORCH,
    "migrations": PROJECT - {"feedback", "migrations"},
}


def imported_modules(path: Path, package: str = "") -> set[tuple[str, int]]:
    """(module name, line) of every import in a file: `from a.b import c` gives a.b and a.b.c
    (c may be a module); relative imports are resolved against `package`, the file's own."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            if not base:
                continue
            found.add((base, node.lineno))
            found.update((f"{base}.{alias.name}", node.lineno) for alias in node.names)
    return found


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


def package_of(path: Path) -> str:
    """The dotted package of a file of the repository (tests/chat_api/x.py: tests.chat_api)."""
    return ".".join(path.relative_to(ROOT).parent.parts)


def imports_of(path: Path, prefixes: set[str]) -> list[str]:
    """`file:line imports module` for every import of a module equal to or under a prefix."""
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    package = package_of(path) if path.is_relative_to(ROOT) else ""
    return [
        f"{rel}:{line} imports {name}"
        for name, line in sorted(imported_modules(path, package))
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    ]


def wrong_crossings(path: Path) -> list[str]:
    """Imports of distill_worker, in an entry point, that are not of its CLI modules or of a
    command in one (`from distill_worker import cli` is the package, then the module)."""
    return [
        crossing
        for crossing in imports_of(path, {"distill_worker"})
        if (name := crossing.rsplit(" ", 1)[1]) != "distill_worker"
        and name not in WORKER_CLI_MODULES
        and name.rsplit(".", 1)[0] not in WORKER_CLI_MODULES
    ]


def imports_of_test_modules(path: Path) -> list[str]:
    """`file:line imports module` for every import of a test module (tests.*.test_*)."""
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    package = package_of(path) if path.is_relative_to(ROOT) else "tests"
    return [
        f"{rel}:{line} imports {name}"
        for name, line in sorted(imported_modules(path, package))
        if name.startswith("tests.") and any(part.startswith("test_") for part in name.split("."))
    ]


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


def test_the_loop_runs_without_the_celery_app() -> None:
    """distill_worker/loop is the loop's logic: the tasks call into it, never the other way."""
    found = [
        bad
        for path in sorted((ROOT / "distill_worker" / "loop").rglob("*.py"))
        for bad in imports_of(path, CELERY_APP)
    ]
    assert found == []


def test_the_cli_crosses_into_distill_worker_only_through_its_cli_modules() -> None:
    cli = ROOT / "chat_api" / "cli.py"
    assert wrong_crossings(cli) == []
    crossed = {name for name, _ in imported_modules(cli, "chat_api")}
    assert crossed >= WORKER_CLI_MODULES  # every command module is added there


def test_the_cli_starts_without_distill_worker() -> None:
    """`chatdistill serve` loads chat_api.cli; distill_worker is imported by its commands."""
    script = (
        "import sys, chat_api.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(TORCH | {'distill_worker'})!r})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_test_module_imports_another() -> None:
    """Shared fixtures and builders live in tests/fixtures/."""
    found = [
        bad
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for bad in imports_of_test_modules(path)
    ]
    assert found == []


def test_the_checks_see_forbidden_imports(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from tests.chat_api.test_replies import start\n"
        "def later():\n"
        "    from tests.distill_worker import test_export\n"
        "    from distill_worker.celery_app import make_celery\n"
        "    from .. import tasks\n"
        "    from distill_worker import cli\n"
        "    from distill_worker.data.loaders import load_utterances\n"
    )
    assert imports_of_test_modules(module) == [
        "bad.py:1 imports tests.chat_api.test_replies",
        "bad.py:1 imports tests.chat_api.test_replies.start",
        "bad.py:3 imports tests.distill_worker.test_export",
    ]
    assert imported_modules(module, "distill_worker.loop") >= {
        ("distill_worker.celery_app", 4),
        ("distill_worker.tasks", 5),
    }
    assert imports_of(module, CELERY_APP) == [
        "bad.py:4 imports distill_worker.celery_app",
        "bad.py:4 imports distill_worker.celery_app.make_celery",
    ]
    assert wrong_crossings(module) == [
        "bad.py:4 imports distill_worker.celery_app",
        "bad.py:4 imports distill_worker.celery_app.make_celery",
        "bad.py:7 imports distill_worker.data.loaders",
        "bad.py:7 imports distill_worker.data.loaders.load_utterances",
    ]


def test_the_serving_tests_load_without_torch() -> None:
    """Import every test module of tests/chat_api and tests/bundle_runtime in a fresh interpreter:
    the tiny bundle imports torch only when a test builds it."""
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for folder in ("chat_api", "bundle_runtime")
        for path in (ROOT / "tests" / folder).rglob("*.py")
    )
    assert "tests.chat_api.test_replies" in modules
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
