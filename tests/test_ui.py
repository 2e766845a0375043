"""`python -m searcher.ui` on a finished search's store, looked at by a real headless Chromium."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [  # as root, without these it refuses to start or stalls on refused connections (NOTES.md)
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rendered(url: str) -> str:
    """The page's DOM after its scripts ran (a fresh profile each time: no remembered UI state)."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def ui(transfer_search):
    """The UI started the way a user starts it; yields the URLs it printed."""
    folder, uri, name, _ = transfer_search
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "searcher", "ui", "--tracking-uri", uri, "--port", str(port)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines, deadline = [], time.monotonic() + 180
    try:
        while time.monotonic() < deadline and not any(line.startswith("http://") and line.endswith("/runs") for line in lines):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line.strip())
        urls = [line for line in lines if line.startswith("http://")]
        assert len(urls) == 3, "\n".join(lines)
        yield {"stage_view": urls[0], "run_page": urls[1], "tree": urls[2], "port": port, "name": name, "output": lines}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_the_ui_prints_direct_links_to_the_runs_table(ui):
    assert ui["tree"].startswith(f"http://127.0.0.1:{ui['port']}/#/experiments/") and ui["tree"].endswith("/runs")
    assert ui["stage_view"].startswith(ui["tree"] + "?viewStateShareKey=searcher-shared-")
    assert ui["run_page"].startswith(ui["tree"] + "/") and len(ui["run_page"].rsplit("/", 1)[1]) == 32
    assert any("one worker, job execution off" in line for line in ui["output"])


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it with apt-get when run as root)")
def test_a_browser_sees_the_search_and_its_stages(ui):
    tree = rendered(ui["tree"])
    assert f"search {ui['name']}" in tree  # the search run, its stages folded beneath it
    stages = rendered(ui["stage_view"])
    for title in ("0 baseline", "1 width", "2 depth", "3 regularization", "4 final", "5 transfer"):
        assert title in stages
    assert "w16 d2" in stages and "final seed 0" in stages and "transfer " in stages  # trial runs, grouped by stage
    page = rendered(ui["run_page"])
    assert f"search {ui['name']}" in page and "Child runs" in page and "0 baseline" in page and "5 transfer" in page
    assert "searcher-digits" in page  # the registered model


def test_the_ui_refuses_a_missing_store_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "searcher.ui", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no such database" in result.stderr and "--tracking-uri" in result.stderr


def test_the_ui_refuses_a_busy_port(tmp_path, tracking_uri):
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).create_experiment("searcher")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "searcher.ui", "--tracking-uri", tracking_uri, "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and f"--port {port}" in result.stderr
