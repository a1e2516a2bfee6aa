"""The MLflow UI in a real headless Chromium: runs page and compare-runs page of a sweep.

Skips only outside CI when Chromium is absent; in CI (CI=true) it must run. Set
NEON_SEARCH_SCREENSHOTS=DIR to run the demo sweep (examples/sweeps/digits-mlp.yaml, a few
minutes) and save its screenshots there: the README's come from
``NEON_SEARCH_SCREENSHOTS=docs/images python -m pytest tests/experiments/test_ui_browser.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("Chromium is not installed (CI installs Debian's chromium)",
                allow_module_level=True)

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = os.environ.get("NEON_SEARCH_SCREENSHOTS")
GENAI_ONLY = ("Judges", "Prompts", "Agent versions", "Evaluation runs")  # sidebar entries
ROWS = "[role=row][row-id]"


def start_ui_cli(uri: str, port: int, experiment: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "ui", "--tracking-uri", uri,
                             "--port", str(port), "--experiment", experiment],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "http://" in line:
            return proc, re.search(r"http://\S+", line).group(0)
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
    raise AssertionError("neon-search ui printed no URL")


def shown_rows(page, trials: set[str], timeout: float = 60) -> list[str]:
    """Run ids of the table's rows in display order, once the saved view has filtered them
    down to ``trials`` (the page renders its default first); ag-grid renders the rows in view
    and a few more."""
    deadline = time.time() + timeout
    while True:
        pairs = page.eval_on_selector_all(
            ROWS, "rows => rows.map(r => [Number(r.getAttribute('row-index')), "
                  "r.getAttribute('row-id')])")
        index = {run: i for i, run in pairs}  # a row has an element per grid container
        ids = sorted(index, key=index.__getitem__)
        if (set(ids) <= trials and len(ids) >= min(len(trials), 15)) or time.time() > deadline:
            return ids
        time.sleep(0.5)


def check_ui(uri: str, experiment: str, shots: Path) -> None:
    """At the link ``neon-search ui`` prints, without a click: MLflow's model-training view
    (no GenAI entries) listing the latest sweep's trials, best first, with the objective,
    state, epochs and cell columns. Screenshots of it and of the best point's compare page."""
    from playwright.sync_api import sync_playwright

    from experiments.store import KIND_TAG, client_for
    from experiments.views import runs_page, view_key

    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    parent = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'sweep'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    trials = {r.info.run_id: r for r in client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000)}
    objective, mode = parent.data.tags["objective"].split(" ")  # "val_log_loss (min)"
    port = free_port()
    proc, url = start_ui_cli(uri, port, experiment)
    shots.mkdir(parents=True, exist_ok=True)
    try:
        assert url == (f"http://127.0.0.1:{port}/"
                       f"{runs_page(exp.experiment_id, view_key(parent.info.run_id))}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            header = page.locator(f'.ag-header-cell[col-id="metrics.`{objective}`"]')
            header.wait_for(timeout=60000)
            assert header.inner_text().strip() == objective
            for column in ("state", "rung"):
                assert page.locator(f'.ag-header-cell[col-id="tags.`{column}`"]').is_visible()
            for column in ("numerics", "backend"):
                assert page.locator(f'.ag-header-cell[col-id="params.`{column}`"]').is_visible()
            ids = shown_rows(page, set(trials))
            assert set(ids) <= set(trials) and len(ids) >= min(len(trials), 15), ids
            values = [trials[i].data.metrics[objective] for i in ids]
            assert values == sorted(values, reverse=mode == "(max)")
            for run_id in ids[:5]:
                name = trials[run_id].info.run_name
                assert page.get_by_text(name, exact=True).first.is_visible(), name
                state = trials[run_id].data.tags["state"]
                row = page.locator(f'[row-id="{run_id}"] [col-id="tags.`state`"]').first
                assert row.inner_text().strip() == state
            nav = page.locator("nav").first
            assert nav.get_by_text("Model registry", exact=True).count() == 1
            assert all(nav.get_by_text(t, exact=True).count() == 0 for t in GENAI_ONLY)
            # MLflow opens its Assistant once per browser on a local server; a user closes it
            close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
            if close.count():
                close.first.click()
                close.first.wait_for(state="detached", timeout=10000)
            page.screenshot(path=str(shots / "mlflow-ui-runs.png"))

            best = ids[0]
            number = trials[best].data.tags["number"]
            pair = [r for r in trials.values() if r.data.tags["number"] == number]
            compare_url = (f"http://127.0.0.1:{port}/#/compare-runs?runs="
                           f"{urllib.parse.quote(json.dumps([r.info.run_id for r in pair]))}"
                           f"&experiments={urllib.parse.quote(json.dumps([exp.experiment_id]))}"
                           "&workflowType=machine_learning")
            page.goto(compare_url)
            page.locator(f"text={pair[0].info.run_name}").first.wait_for(timeout=60000)
            page.locator("text=train_loss").first.wait_for(timeout=60000)
            content = page.content()
            assert all(r.info.run_name in content for r in pair)
            page.screenshot(path=str(shots / "mlflow-ui-compare.png"), full_page=True)

            # the same selectors see the GenAI view's entries where MLflow shows them
            page.goto(url.replace("workflowType=machine_learning", "workflowType=genai"))
            page.locator("nav").first.get_by_text("Judges", exact=True).wait_for(timeout=60000)
            browser.close()
        assert (shots / "mlflow-ui-runs.png").stat().st_size > 10_000
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in out
    # the whole process group is gone: nothing listens on the port any more
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(300)
def test_runs_and_compare_pages_show_trials(tracked_sweep, tmp_path):
    uri, _, _ = tracked_sweep
    check_ui(uri, "tracked", tmp_path)


if SCREENSHOTS:  # defined only when asked for: it runs the whole demo sweep first

    @pytest.mark.timeout(900)
    def test_demo_sweep_screenshots(tmp_path):
        """The README's screenshots, from the demo sweep's own experiment (``make demo``)."""
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        proc = subprocess.run([sys.executable, "-m", "experiments.cli",
                               "examples/sweeps/digits-mlp.yaml", "--fresh", "-q", "--workdir",
                               str(tmp_path / "work"), "--tracking-uri", uri], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        check_ui(uri, "digits-mlp", Path(SCREENSHOTS).resolve())
