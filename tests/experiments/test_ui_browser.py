"""The MLflow UI in a real headless Chromium: runs page and compare-runs page of a sweep.

Skips only outside CI when Chromium is absent; in CI (CI=true) it must run. Set
NEON_SEARCH_SCREENSHOTS=DIR to keep the screenshots (the README's comes from here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
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


def start_ui_cli(uri: str, port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "ui", "--tracking-uri", uri,
                             "--port", str(port), "--experiment", "tracked"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "http://" in line:
            return proc, re.search(r"http://\S+", line).group(0)
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
    raise AssertionError("neon-search ui printed no URL")


@pytest.mark.timeout(300)
def test_runs_and_compare_pages_show_trials(tracked_sweep, tmp_path):
    from playwright.sync_api import sync_playwright

    from experiments.tracking import client_for

    uri, result, _ = tracked_sweep
    port = free_port()
    proc, url = start_ui_cli(uri, port)
    shots = Path(os.environ.get("NEON_SEARCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    try:
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/#/experiments/\d+/runs", url)
        client = client_for(uri)
        exp = client.get_experiment_by_name("tracked")
        names = sorted(t.name for t in result.trials)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            parent = page.locator("[role=row]", has_text="tracked").first
            parent.wait_for(timeout=60000)
            parent.locator("button").first.click()  # expand the sweep's nested trial runs
            page.locator(f"text={names[0]}").first.wait_for(timeout=30000)
            shown = set(re.findall(r"trial-\d+-fp\d+", page.content()))
            assert shown == set(names)
            page.screenshot(path=str(shots / "mlflow-ui-runs.png"))

            runs = client.search_runs([exp.experiment_id], "tags.`neon_search.kind` = 'trial'")
            pair = [r for r in runs if r.data.tags["number"] == str(result.best.number)]
            ids = json.dumps([r.info.run_id for r in pair])
            compare_url = (f"http://127.0.0.1:{port}/#/compare-runs?runs="
                           f"{urllib.parse.quote(ids)}&experiments="
                           f"{urllib.parse.quote(json.dumps([exp.experiment_id]))}")
            page.goto(compare_url)
            page.locator(f"text={pair[0].info.run_name}").first.wait_for(timeout=60000)
            page.locator("text=train_loss").first.wait_for(timeout=60000)
            content = page.content()
            assert all(r.info.run_name in content for r in pair)
            page.screenshot(path=str(shots / "mlflow-ui-compare.png"), full_page=True)
            browser.close()
        assert (shots / "mlflow-ui-runs.png").stat().st_size > 10_000
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in out
    # the whole process group is gone: nothing listens on the port any more
    import socket

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
