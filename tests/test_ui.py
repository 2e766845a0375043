"""`python -m searcher.ui` on a finished search's store, looked at by a real headless Chromium."""

import html
import json
import os
import re
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


def chromium(*args: str) -> str:
    """Run headless Chromium on a fresh profile (no remembered state); returns what it printed."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rendered(url: str) -> str:
    """The page's DOM after its scripts ran."""
    return chromium("--dump-dom", url)


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
    # the server's own messages (uvicorn's notices, MLflow's and Starlette's warnings) are in a log, not between the links
    (log,) = [line.removeprefix("the server's own messages: ") for line in ui["output"] if line.startswith("the server's own messages: ")]
    assert "Uvicorn running on" in open(log).read()
    assert not [line for line in ui["output"] if "INFO" in line or "Warning" in line or "MLflow]" in line], ui["output"]


def start_ui(tracking_uri: str, port: int, cwd, *options: str) -> tuple[subprocess.Popen, list[str]]:
    """`python -m searcher.ui` on `port`, read until its runs-table link (or its exit)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "searcher.ui", "--tracking-uri", tracking_uri, "--port", str(port), *options],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines = [process.stdout.readline().strip()]
    while lines[-1] and not (lines[-1].startswith("http://") and lines[-1].endswith("/runs")):
        lines.append(process.stdout.readline().strip())
    return process, lines


def test_the_ui_restarts_on_its_port_at_once_and_a_server_that_does_not_answer_shows_its_last_lines(tmp_path, tracking_uri):
    """Stopped and started again on the same port: the first server's closed connections (TIME_WAIT, a minute) once
    made the port look taken ("--port ... is not free")."""
    import urllib.request

    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).create_experiment("searcher")
    port = free_port()
    for attempt in ("first", "again"):
        process, lines = start_ui(tracking_uri, port, tmp_path)
        try:
            assert lines[-1].endswith("/runs"), (attempt, lines)
            with urllib.request.urlopen(lines[-1].split("#")[0], timeout=30) as response:  # a connection to close
                assert response.status == 200
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 130

    result = subprocess.run(
        [sys.executable, "-m", "searcher.ui", "--tracking-uri", tracking_uri, "--port", str(free_port()), "--timeout", "0.01"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "did not answer" in result.stderr and "raise --timeout" in result.stderr, result.stderr
    log = re.search(r"Its last lines \((\S+)\):", result.stderr).group(1)
    assert os.path.exists(log) and "Traceback" not in result.stderr


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


@pytest.mark.slow
def test_serving_other_machines_accepts_this_machines_name_as_printed(tmp_path, tracking_uri):
    """With --host 0.0.0.0 the printed links name this machine; MLflow's default Host check refused exactly those (403)."""
    import urllib.error
    import urllib.request

    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).create_experiment("searcher")
    port = free_port()
    process, lines = start_ui(tracking_uri, port, tmp_path, "--host", "0.0.0.0")
    try:
        started = next((index for index, line in enumerate(lines) if "one worker" in line), None)
        assert started is not None, lines
        assert lines[started + 1].startswith("the server's own messages: "), lines
        assert lines[started + 2].startswith("serving other machines: Host headers"), lines

        def status(host_header: str) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host_header})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert status(f"{socket.gethostname()}:{port}") == 200  # the name the printed links use
        assert status(f"evil.example.com:{port}") == 403  # DNS rebinding is still refused
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


# The report in a browser: test-only script appended to a copy of report.html. It moves the first figure to
# the top of the page for the screenshot (headless Chromium's screenshot misses a scrolled page) and writes, per image, whether it decoded, its natural and shown width and
# how many distinct colours a 100-px-wide thumbnail of it holds (a blank image has one).
FIGURE_CHECK = """<script>
window.addEventListener("load", () => {  // synchronous: --dump-dom does not wait for promises
  const images = [...document.querySelectorAll("figure img")];
  document.body.prepend(images[0].closest("figure"));
  const found = [];
  for (const image of images) {
    const canvas = document.createElement("canvas");
    canvas.width = 100; canvas.height = Math.round(100 * image.naturalHeight / image.naturalWidth);
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < pixels.length; i += 4) colours.add(pixels[i] << 16 | pixels[i + 1] << 8 | pixels[i + 2]);
    const box = image.getBoundingClientRect();
    found.push({alt: image.alt, complete: image.complete, natural: image.naturalWidth, shown: box.width, top: box.top, left: box.left, height: box.height, colours: colours.size});
  }
  const out = document.createElement("pre");
  out.id = "figure-check"; out.textContent = JSON.stringify(found);
  document.body.append(out);
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it with apt-get when run as root)")
def test_a_browser_shows_the_reports_figures_sharp_and_page_wide(transfer_search, tmp_path):
    from PIL import Image, ImageChops, ImageStat

    from searcher.report.canvas import DISPLAY_DPI, SCALE, WIDTH

    folder, _, _, _ = transfer_search
    (report,) = folder.glob("outputs/*/*/report.html")
    page = tmp_path / "report.html"
    page.write_text(report.read_text().replace("</body>", FIGURE_CHECK + "</body>"))
    shot = tmp_path / "screenshot.png"
    dom = chromium("--window-size=1280,1000", f"--force-device-scale-factor={SCALE}", f"--screenshot={shot}", "--dump-dom", page.as_uri())
    found = json.loads(html.unescape(re.search(r'<pre id="figure-check">(.*?)</pre>', dom, re.S).group(1)))

    shown_width = WIDTH * DISPLAY_DPI  # 1000 CSS px, drawn from 2000 px
    assert len(found) == 8  # the overview, six stage stories, the final model's learning curves
    for image in found:
        assert image["complete"] and image["natural"] == SCALE * shown_width and image["shown"] == shown_width, image
        assert image["colours"] > 20, f"{image['alt']} looks blank"
    first = found[0]
    with Image.open(shot) as screenshot, Image.open(report.parent / "figures" / "overview.png") as figure:
        assert screenshot.size == (1280 * SCALE, 1000 * SCALE)
        box = [round(first[k] * SCALE) for k in ("left", "top")]
        crop = screenshot.convert("RGB").crop((*box, box[0] + figure.width, box[1] + min(figure.height, screenshot.height - box[1])))
        difference = ImageStat.Stat(ImageChops.difference(crop, figure.convert("RGB").crop((0, 0, *crop.size)))).mean
    assert max(difference) < 2, f"the screenshot does not show the overview figure pixel for pixel (mean difference {difference})"
