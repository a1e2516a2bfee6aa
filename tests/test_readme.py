"""Every Python block of README.md runs as printed, in a fresh interpreter and directory.

The blocks that read a sweep's records find them where the README's tour leaves them: a
small run of the demo sweep (``digits-mlp``) logged to ``./mlflow.db`` of the directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a short run of the demo sweep, as the tour leaves it."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("digits-mlp.yaml", "digits-mlp-template.yaml"):
        shutil.copy(ROOT / "examples" / "sweeps" / name, folder / name)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "digits-mlp.yaml", "--trials", "3", "-q"],
        cwd=folder, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return folder


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
@pytest.mark.timeout(300)
def test_python_block_runs(index: int, tour_dir: Path, tmp_path: Path):
    code = python_blocks()[index]
    for item in tour_dir.iterdir():
        target = tmp_path / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy(item, target)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"README block {index}:\n{code}\n{proc.stderr[-3000:]}"
