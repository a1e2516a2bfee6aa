"""The search-quality benchmark runs end to end and writes valid JSON (tiny budget)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_valid_json(tmp_path: Path) -> None:
    output = tmp_path / "quality.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "search_quality.py"), "--quick",
           "--seeds", "2", "--budget", "25", "--problems", "branin", "hartmann3",
           "--workers", "2", "--output", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["config"]["budget"] == 25 and report["config"]["seeds"] == 2
    results = report["results"]
    assert set(results) == {"branin", "hartmann3"}
    for problem in results.values():
        assert set(problem) == {"grid", "random", "tpe", "spearmint"}
        for name, entry in problem.items():
            stats = entry["best"]["25"]
            assert len(stats["per_seed"]) == stats["n"]
            assert min(stats["per_seed"]) <= stats["median"] <= max(stats["per_seed"])
            assert stats["n"] == (1 if name == "grid" else 2)
    branin_target = next(t for t in report["targets"] if t["target"].startswith("branin"))
    assert branin_target["status"] == "n/a"  # 50 evaluations were not run
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout or "n/a" in proc.stdout
    assert "spearmint" in proc.stdout
