"""A run that compiles the engine's kernels says so once, on stderr; a run on a warm cache
does not (``neon`` and the sweep controller's local executor), in subprocesses with
``NUMBA_CACHE_DIR`` pointed at folders of their own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from neon.backends import kernel_cache

NOTICE = "compiling the engine's kernels (first run only, about"
DIGITS = "examples/mlp/digits-small.yaml"


def run(args, cache, **kw):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory):
    """``neon`` on an empty cache (it compiles), then the cache it left."""
    cache = tmp_path_factory.mktemp("numba-cache")
    proc = run(["-m", "neon.cli", DIGITS, "--epochs", "1"], cache)
    return proc, cache


def test_neon_announces_a_compiling_run_once(cold_run):
    proc, _ = cold_run
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(NOTICE) == 1 and proc.stderr.startswith("neon: compiling")
    assert NOTICE not in proc.stdout


def test_neon_on_a_warm_cache_says_nothing(cold_run):
    _, cache = cold_run
    proc = run(["-m", "neon.cli", DIGITS, "--epochs", "1"], cache)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_mistake_in_the_model_file_is_reported_before_anything_compiles(tmp_path):
    bad = tmp_path / "bad.yaml"
    with open(DIGITS, encoding="utf-8") as fh:
        bad.write_text(fh.read().replace("type: dropout", "type: dropot"))
    proc = run(["-m", "neon.cli", str(bad)], tmp_path / "cache")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and NOTICE not in proc.stderr


def test_the_sweep_executor_announces_once_before_its_workers_start(cold_run, tmp_path):
    code = ("from search.executors.local import LocalExecutor\n"
            "LocalExecutor(1); LocalExecutor(2)\n")
    cold = run(["-c", code], tmp_path / "empty")
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr == f"neon-search: {NOTICE} {kernel_cache.COMPILE_TIME})...\n"
    warm = run(["-c", code], cold_run[1])
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr


def test_announce_prints_once_and_never_when_silenced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # empty: cold
    monkeypatch.setattr(kernel_cache, "_announced", False)
    monkeypatch.setattr(kernel_cache, "_prog", "neon")
    assert not kernel_cache.is_warm()
    kernel_cache.announce_as(None)  # what ``neon -q`` does
    assert not kernel_cache.announce("neon-search")
    kernel_cache.announce_as("neon")
    assert kernel_cache.announce() and not kernel_cache.announce()
    assert capsys.readouterr().err.count(NOTICE) == 1
