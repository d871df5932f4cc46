"""The tree stays lint-clean: ruff, the import contracts and mypy --strict, as configured in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    result = subprocess.run([ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_architecture_contracts_hold() -> None:
    """The arrows point inward: consent imports nothing of ours, the core no edge (pyproject.toml)."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if tool is None:
        pytest.skip("import-linter is not installed (it is in the dev extra)")
    result = subprocess.run([tool], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_mypy_strict_finds_nothing(tmp_path: Path) -> None:
    """mypy --strict over the project and its tests (``[tool.mypy] files``), as ``make lint`` runs it.

    The cache starts empty in a temporary folder, as in CI's fresh clone: a stale ``.mypy_cache`` can neither hide
    an error nor slow the next run down (about 15 s cold on two cores).
    """
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed (it is in the dev extra)")
    command = [mypy, "--cache-dir", str(tmp_path / "mypy-cache")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
