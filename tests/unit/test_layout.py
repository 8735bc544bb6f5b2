"""The layout's rules (docs/architecture.md): import-linter's contracts in pyproject.toml hold, and
every package says in its docstring what lives there and what it may import."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "remax_ray"


def _lint_imports() -> str:
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: scripts/setup.sh installs import-linter")
    return found


def test_import_linter_contracts_are_kept() -> None:
    """Layers from cli down to algo, no cycles in any package, algo pure, ray only in the shells,
    learner / rollout / reward independent, sync below both ends (pyproject.toml)."""
    proc = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_contracts_can_fail(tmp_path: Path) -> None:
    """A contract that the code breaks is reported as broken: the check above is not vacuous."""
    config = tmp_path / "contracts.ini"
    config.write_text("[importlinter]\nroot_package = remax_ray\n\n"
                      "[importlinter:contract:upward]\nname = learner may not import algo (false on purpose)\n"
                      "type = forbidden\nsource_modules = remax_ray.learner\nforbidden_modules = remax_ray.algo\n")
    proc = subprocess.run([_lint_imports(), "--config", str(config), "--no-cache"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout


@pytest.mark.parametrize("init", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: str(p.parent.relative_to(REPO_ROOT)))
def test_every_package_opens_with_what_it_holds_and_may_import(init: Path) -> None:
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc, f"{init} has no docstring"
    if init.parent != PACKAGE:
        assert "import" in doc.lower(), f"{init}: the docstring does not say what the package may import"


def test_the_top_level_is_packages_by_role() -> None:
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert entries == ["__init__.py", "algo", "assets", "cli.py", "cluster", "config", "data", "driver",
                       "learner", "models", "monitor", "repro", "reward", "rollout", "sync"]
