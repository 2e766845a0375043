"""`python -m searcher.ui` (or `searcher ui`): the MLflow UI on a search's tracking store, lean, with direct links.

Starts `mlflow server` with one worker and job execution off (MLflow's default
starts ~15 processes in 3.3 GB; this one ~515 MB), bound to 127.0.0.1 unless
--host says otherwise, waits until it answers, then prints the runs table's URL
a stage-by-stage view and the run page of the latest (or --search-name) search. Ctrl-C stops it.
The server's own messages (its start-up notices, deprecation warnings, later errors) go to a log file whose
path is printed, so the links are what the terminal shows; where the server fails, its last lines are.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from searcher.uris import redact, with_driver

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_SIGINT = 0, 1, 2, 130
DEFAULT_URI = "sqlite:///mlflow.db"


class UIError(Exception):
    """The UI cannot start; the message names the option and what to do."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m searcher.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=DEFAULT_URI, help="the store the searches wrote (default: sqlite:///mlflow.db here)")
    parser.add_argument("--experiment", default="searcher", help="MLflow experiment (tracking.experiment; default: searcher)")
    parser.add_argument("--search-name", default=None, help="the search to link to stage by stage (default: the latest)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 to serve other machines)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument(
        "--allowed-hosts", default=None, help="Host headers to accept (default: localhost, private IPs and, with --host 0.0.0.0, this machine's names)"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server to answer (default 120)")
    return parser.parse_args(argv)


def absolute_uri(uri: str) -> str:
    """sqlite:///relative.db -> sqlite:////abs/relative.db, so the server finds it wherever it runs."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).expanduser().resolve())
    return uri


def check_store(uri: str) -> None:
    from searcher.tracking import TrackingError, check_uri

    try:
        check_uri(uri)
    except TrackingError as error:
        raise UIError(str(error).replace("tracking.uri=", "--tracking-uri ")) from None
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise UIError(f"--tracking-uri {redact(uri)}: no such database; run a search here first or point --tracking-uri at its store.")


def check_port(host: str, port: int) -> None:
    """Refuse a port another server listens on. SO_REUSEADDR, as the server itself binds: without it the connections
    of a UI stopped a moment ago (TIME_WAIT, a minute) made a free port look taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UIError(f"--port {port} on {host} is not free ({error.strerror}); pick another with --port.") from None


def links(uri: str, experiment: str, search_name: str | None, base: str) -> list[tuple[str, str]]:
    """(label, URL) pairs: the runs table, and the search's stage-by-stage view (saved on the experiment)."""
    from searcher.tracking.queries import latest_search
    from searcher.tracking.reader import SearchNotFound, find_search_run
    from searcher.tracking.schema import Tags
    from searcher.tracking.store import client_for
    from searcher.tracking.views import run_url, runs_url, save_stage_view

    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise UIError(f"--experiment {experiment!r} is not in {uri} (experiments: {names}); pass the tracking.experiment the search used.")
    experiment_id = found.experiment_id
    if search_name is not None:
        try:
            run = client.get_run(find_search_run(client, search_name, experiment))
        except SearchNotFound as error:
            raise UIError(f"--search-name: {error}") from None
    else:
        run = latest_search(client, experiment_id)
    pairs = []
    if run is not None:
        name = run.data.tags.get(Tags.SEARCH_NAME, run.info.run_name)
        key = save_stage_view(client, experiment_id, name)
        pairs.append((f"search {name}, stage by stage", runs_url(base, experiment_id, key)))
        pairs.append((f"search {name}, its run (stages as child runs, report.html under Artifacts)", run_url(base, experiment_id, run.info.run_id)))
    pairs.append(("runs table (each search run folds open into its stages and trials)", runs_url(base, experiment_id)))
    return pairs


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str, port: int, given: str | None) -> tuple[str | None, str]:
    """(the server's --allowed-hosts, a line saying so): serving other machines, this machine's names are accepted too.

    MLflow accepts only localhost and private IPs as Host headers by default (against DNS
    rebinding), so a browser that opens the link printed here, http://<this machine's name>:port,
    got 403 "Invalid Host header". An explicit --allowed-hosts is used as given.
    """
    if given or host in LOOPBACK:
        return given, ""
    from searcher.tracking import ui_default_allowed_hosts

    names = sorted({socket.gethostname(), socket.getfqdn()} | ({host} if host not in ("0.0.0.0", "::") else set()))
    accepted = [*ui_default_allowed_hosts(), *names, *(f"{name}:{port}" for name in names)]
    return ",".join(accepted), f"serving other machines: Host headers {', '.join(names)}, localhost and private IPs are accepted; others with --allowed-hosts"


def server_command(uri: str, host: str, port: int, allowed_hosts: str | None) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1"]
    command += ["--uvicorn-opts", "--no-access-log"]  # one log line per browser request drowns the links
    return command + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def server_log() -> Path:
    """A new file for the server's messages (kept after it stops: they are what explains a failure)."""
    handle, path = tempfile.mkstemp(prefix="searcher-ui-", suffix=".log")
    os.close(handle)
    return Path(path)


def last_lines(log: Path, count: int = 15) -> str:
    lines = log.read_text(errors="replace").splitlines()[-count:] if log.exists() else []
    return "\n".join(f"  | {line}" for line in lines) or "  | (nothing)"


def wait_until_up(process: subprocess.Popen, health_url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UIError(f"the MLflow server exited with code {process.returncode} before answering; its last lines ({log}):\n{last_lines(log)}")
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise UIError(
        f"the MLflow server did not answer {health_url} within {timeout:g} s; raise --timeout on a slow machine. "
        f"Its last lines ({log}):\n{last_lines(log)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    uri = with_driver(absolute_uri(args.tracking_uri))  # the PostgreSQL driver the search used (psycopg2), not SQLAlchemy's default
    shown_host = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown_host}:{args.port}"
    try:
        check_store(uri)
        check_port(args.host, args.port)
        pairs = links(uri, args.experiment, args.search_name, base)
    except UIError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    # its own process group: `mlflow server` runs uvicorn as a child, and both must stop together
    accepted, note = allowed_hosts(args.host, args.port, args.allowed_hosts)
    log = server_log()
    with log.open("w") as messages:
        process = subprocess.Popen(
            server_command(uri, args.host, args.port, accepted), env=env, start_new_session=True, stdout=messages, stderr=subprocess.STDOUT
        )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background, where SIGINT starts out ignored
    try:
        wait_until_up(process, f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}/health", args.timeout, log)
        print(f"MLflow UI on {redact(uri)} (one worker, job execution off); Ctrl-C stops it", flush=True)
        print(f"the server's own messages: {log}", flush=True)
        if note:
            print(note, flush=True)
        for label, url in pairs:
            print(f"{label}:\n  {url}", flush=True)
        return process.wait()
    except UIError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_SIGINT
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow and its uvicorn worker), SIGKILL after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


if __name__ == "__main__":
    sys.exit(main())
