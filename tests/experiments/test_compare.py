"""Comparison numbers against a hand computation on a known table; plots; the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from scipy import stats

from experiments.comparison import compare
from neon.errors import UserError


def known_table() -> pd.DataFrame:
    fp32 = [0.10, 0.20, 0.15, 0.30, 0.25]
    fp16 = [0.11, 0.20, 0.17, 0.29, 0.28]
    rows = []
    for n, (a, b) in enumerate(zip(fp32, fp16)):
        rows.append({"number": n, "cell": "fp32", "numerics": "fp32", "state": "completed",
                     "val_misclassification": a, "trial_seconds": 2.0,
                     "overflow_fraction": 0.0, "arch": n % 2})
        rows.append({"number": n, "cell": "fp16", "numerics": "fp16", "state": "completed",
                     "val_misclassification": b, "trial_seconds": 3.0,
                     "overflow_fraction": 0.01 * n, "arch": n % 2})
    rows.append({"number": 9, "cell": "fp16", "numerics": "fp16", "state": "failed",
                 "val_misclassification": 0.9, "trial_seconds": 1.0, "arch": 0})
    return pd.DataFrame(rows)


def test_paired_numerics_against_hand_computation():
    result = compare(known_table(), by="numerics")
    t = result.table
    # point 9 (fp16 failed, no fp32 trial) is shown as incomplete, left out of the statistics
    assert list(t.index) == [0, 1, 2, 3, 4, 9]
    assert t.loc[9, ["fp32", "fp16", "delta fp16"]].isna().all()
    assert t.loc[9, "incomplete"] == "fp32 missing, fp16 failed"
    assert (t.loc[[0, 1, 2, 3, 4], "incomplete"] == "").all()
    t = t.loc[[0, 1, 2, 3, 4]]
    delta = [0.01, 0.0, 0.02, -0.01, 0.03]
    assert t["delta fp16"].tolist() == pytest.approx(delta)
    assert t["time fp16/fp32"].tolist() == pytest.approx([1.5] * 5)
    assert t["overflow fp16"].tolist() == pytest.approx([0, 0.01, 0.02, 0.03, 0.04])
    s = result.summary
    assert s["fp16: pairs"] == 5 and s["fp16: incomplete pairs"] == 1
    mean = sum(delta) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in delta) / 4)
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert s["fp16: mean delta"] == pytest.approx(mean)
    assert s["fp16: 95% interval"] == pytest.approx((mean - half, mean + half))
    # scipy's wilcoxon on the same differences (zeros dropped, as 'wilcox' does)
    assert s["fp16: wilcoxon p"] == pytest.approx(stats.wilcoxon(delta).pvalue)
    # |delta| <= 0.005: only the zero difference
    assert s["fp16: share within 0.005"] == pytest.approx(1 / 5)
    assert "fp16: 95% interval" in str(result)


def test_grouped_by_parameter_and_architecture():
    df = known_table()
    result = compare(df.rename(columns={"arch": "model.layers"}), by="architecture")
    t = result.table
    assert t.loc[(0, "fp32"), "trials"] == 3 and t.loc[(1, "fp16"), "trials"] == 2
    assert t.loc[(0, "fp32"), "best"] == pytest.approx(0.10)
    assert t.loc[(1, "fp32"), "median"] == pytest.approx(0.25)
    with pytest.raises(UserError, match="no parameter 'nope'"):
        compare(df, by="nope")
    with pytest.raises(UserError, match="no metric 'val_acc'"):
        compare(df, metric="val_acc")


def test_load_and_cli_on_the_tracked_sweep(tracked_sweep, tmp_path):
    import experiments

    uri, result, _ = tracked_sweep
    df = experiments.load("tracked", tracking_uri=uri)
    assert len(df) == len(result.trials)
    assert {"optimizer.learning_rate", "val_misclassification", "trial_seconds",
            "cell", "state"} <= set(df.columns)
    csv = tmp_path / "t.csv"
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "compare", "tracked",
                           "--tracking-uri", uri, "--csv", str(csv), "--plots",
                           str(tmp_path / "plots")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "delta fp16" in proc.stdout and "wilcoxon p" in proc.stdout
    assert csv.exists()
    for name in ("optimization_history", "learning_curves", "paired_scatter",
                 "parallel_coordinates"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name
    bad = subprocess.run([sys.executable, "-m", "experiments.cli", "compare", "trackd",
                          "--tracking-uri", uri], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "did you mean 'tracked'" in bad.stderr
