"""One live process per search name (searcher/tracking/lease.py): real processes, real signals, real stores."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli, search_runs, wait_for

from searcher.tracking.lease import LeaseTaken, acquire

POSTGRES = os.environ.get("SEARCHER_TEST_POSTGRES_URL")

# A process that takes the lease of search "x" (when told to wait: once a line comes on its stdin), says whether it
# holds it and keeps it until its stdin is closed; it says LOST when another process took the lease over meanwhile.
HOLDER = """
import os, sys
from searcher.tracking.lease import LeaseTaken, acquire
storage, seconds, wait = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "wait"
print("READY", flush=True)
if wait:
    sys.stdin.readline()  # (blocked, not spinning: three spinning holders starved each other's imports on two cores)
try:
    # (os.write, not print: on SIGCONT this runs in a signal handler, which may land while the main thread is inside
    # print("HELD")'s flush; a print there raises "reentrant call inside <_io.BufferedWriter name='<stdout>'>")
    lease = acquire(storage, "x", seconds, on_lost=lambda: os.write(1, b"LOST\\n"))
except LeaseTaken as error:
    print("TAKEN", error, flush=True)
    sys.exit(2)
print("HELD", flush=True)
sys.stdin.read()
lease.release()
"""


def holder(storage: str, seconds: float = 60, wait: bool = False, **environment: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), **environment)
    command = [sys.executable, "-c", HOLDER, storage, str(seconds), "wait" if wait else "now"]
    process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout.readline().startswith("READY"), process.stdout.read()
    return process


def said(process: subprocess.Popen) -> str:
    """What the holder said about the lease: HELD, or TAKEN with the refusal."""
    line = process.stdout.readline()
    assert line.startswith(("HELD", "TAKEN")), line + process.stdout.read()
    return line


def held(process: subprocess.Popen) -> None:
    assert said(process).startswith("HELD")


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage(request, tmp_path):
    """An empty Optuna storage of each kind the lease is kept in (PostgreSQL: a fresh database, where there is a server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
    elif request.param == "journal":
        yield f"journal:///{tmp_path / 'optuna.log'}"
    else:
        if not POSTGRES:
            pytest.skip("no PostgreSQL server: set SEARCHER_TEST_POSTGRES_URL (scripts/test.sh starts one)")
        import uuid

        import psycopg2

        name = f"searcher_lease_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(POSTGRES)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_of_simultaneous_starts_on_an_empty_store_exactly_one_takes_the_lease(storage):
    processes = [holder(storage, wait=True) for _ in range(3)]  # each imported and waiting for the same instant
    for process in processes:  # (microseconds apart)
        process.stdin.write("go\n")
        process.stdin.flush()
    answers = [said(process) for process in processes]
    assert sorted(answer.split()[0] for answer in answers) == ["HELD", "TAKEN", "TAKEN"], answers
    owner = processes[[answer.startswith("HELD") for answer in answers].index(True)]
    for answer in answers:
        if answer.startswith("TAKEN"):
            assert f"search.name=x is in use by pid {owner.pid} on host " in answer and "choose another search.name" in answer
    owner.stdin.close()
    assert [process.wait(timeout=60) for process in processes].count(0) == 1


def test_a_released_lease_is_taken_anew(storage):
    process = holder(storage)
    held(process)
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    lease = acquire(storage, "x", 60)
    assert lease.previous is None
    lease.release()


def test_a_killed_owner_on_this_machine_is_known_dead_at_once(storage):
    process = holder(storage)
    held(process)
    process.kill()
    process.wait()
    lease = acquire(storage, "x", 60)  # its heartbeat is fresh, but its process is gone
    assert lease.previous is not None and lease.previous.owner.pid == process.pid
    assert lease.previous.why == "its process is gone"
    lease.release()


def test_a_stopped_owner_keeps_the_lease_until_it_expires_then_learns_it_lost_it(storage):
    process = holder(storage, seconds=6)  # (not shorter: on a loaded machine opening the store takes seconds)
    held(process)
    process.send_signal(signal.SIGSTOP)  # alive, but no heartbeat
    stopped = time.monotonic()
    try:
        with pytest.raises(LeaseTaken, match=f"in use by pid {process.pid} "):
            acquire(storage, "x", 60)
        assert time.monotonic() - stopped < 5, "the lease may have expired before it was tried: the test says nothing"
        time.sleep(max(0.0, stopped + 7 - time.monotonic()))
        lease = acquire(storage, "x", 60)
        assert lease.previous is not None and lease.previous.owner.pid == process.pid
        assert lease.previous.why.startswith("no heartbeat for ")
    finally:
        process.send_signal(signal.SIGCONT)
    line = process.stdout.readline()  # LOST, at its next heartbeat
    if not line.startswith("LOST"):
        process.kill()
        pytest.fail(f"the stopped owner said {line!r} on SIGCONT, not LOST: {process.communicate()[0][-3000:]}")
    process.kill()
    process.wait()
    with pytest.raises(LeaseTaken):  # the lease stayed with its new owner
        acquire(storage, "x", 60)
    lease.release()


def test_a_requeued_slurm_job_takes_over_from_its_earlier_run_at_once(tmp_path, monkeypatch):
    """SLURM starts a requeued job again (same job id, SLURM_RESTART_COUNT + 1) only once its earlier run has ended,
    on whatever node: its lease is taken over without waiting for it to expire (here the earlier run still lives,
    as on a node cut off from the network, and learns at its next heartbeat that it lost the search)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    process = holder(storage, seconds=3, SLURM_JOB_ID="77", SLURM_RESTART_COUNT="0")
    held(process)
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    with pytest.raises(LeaseTaken, match=r"in use by pid \d+ on host \S+ \(SLURM job 77\) since "):  # another job
        acquire(storage, "x", 60)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    lease = acquire(storage, "x", 60)
    assert lease.previous is not None and lease.previous.why == "its SLURM job was requeued"
    assert process.stdout.readline().startswith("LOST")
    process.kill()
    process.wait()
    lease.release()


# The whole command (slow: real searches)


@pytest.fixture
def start_cli():
    """`python -m searcher ARGS` started in the background; whatever still runs at the end of the test is killed."""
    started: list[subprocess.Popen] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120", **(env or {}))
        command = [sys.executable, "-m", "searcher", *args]
        started.append(subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()


def training(uri: str, process: subprocess.Popen) -> bool:
    """A trial run is RUNNING (or the process ended: the caller's assert says so)."""
    return any(r.info.status == "RUNNING" for r in search_runs(uri, "tags.`searcher.role` = 'trial'")) or process.poll() is not None


def trial_keys(uri: str, status: str = "FINISHED") -> list[str]:
    return [r.data.tags["searcher.trial_key"] for r in search_runs(uri, "tags.`searcher.role` = 'trial'") if r.info.status == status]


@pytest.mark.hunt  # (CI: the next test's loser exits 2 naming the owner, and tests/test_cli.py's refused command writes nothing)
def test_a_second_process_on_a_running_search_exits_2_naming_the_owner(start_cli, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ("search=quick", f"tracking.uri={uri}", "search.name=conc")
    first = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: training(uri, first), every=0.3)
    assert first.poll() is None, first.stdout.read()[-3000:]
    second = run_cli(*args, cwd=tmp_path, timeout=300)
    assert second.returncode == 2, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"search.name=conc is in use by pid {first.pid} on host " in second.stderr
    assert "wait until that search ends, or choose another search.name" in second.stderr
    assert "Traceback" not in second.stdout + second.stderr
    said = first.communicate(timeout=600)[0]
    assert first.returncode == 0, said[-3000:]
    keys = trial_keys(uri)
    assert keys and len(keys) == len(set(keys)), "a trial key has two FINISHED runs"
    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING" or "searcher.orphaned" in r.data.tags]
    assert {re.match(r"pid (\d+) ", r.data.tags["searcher.owner"]).group(1) for r in runs} == {str(first.pid)}  # the second wrote nothing


@pytest.mark.slow
def test_two_simultaneous_starts_on_an_empty_sqlite_store_one_runs_the_other_exits_2(start_cli, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ("search=quick", f"tracking.uri={uri}", "search.name=both")
    processes = [start_cli(*args, cwd=tmp_path) for _ in range(2)]  # both open the new store at the same moment
    wait_for(lambda: any(p.poll() is not None for p in processes), timeout=300, every=0.2)
    loser = next(p for p in processes if p.poll() is not None)
    winner = next(p for p in processes if p is not loser)
    said = loser.stdout.read()
    assert loser.returncode == 2, said[-3000:]
    assert f"search.name=both is in use by pid {winner.pid} " in said and "Traceback" not in said
    wait_for(lambda: training(uri, winner), every=0.3)  # the other one runs the search
    winner.send_signal(signal.SIGTERM)
    said = winner.communicate(timeout=60)[0]
    assert winner.returncode == 143, said[-3000:]
    assert "Traceback" not in said


def frozen(pid: int) -> bool:
    """The process is stopped (state T in /proc): SIGSTOP is delivered when the kernel next schedules it, not at kill()."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def unlocked(database: Path) -> bool:
    """No process holds a lock on the SQLite file (one stopped inside a read or a write would hold it until continued,
    and a write elsewhere would wait on it). EXCLUSIVE, not IMMEDIATE: a reader's lock blocks another's commit too."""
    if not database.exists():
        return True
    connection = sqlite3.connect(database, timeout=0.5)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        connection.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


@pytest.mark.slow
def test_an_owner_stopped_past_its_lease_is_taken_over_and_stops_without_touching_the_runs(start_cli, tmp_path):
    """SIGSTOP: the owner lives but sends no heartbeat. After tracking.lease_seconds a re-run takes the search over,
    marks only the stopped owner's RUNNING runs and finishes it; the owner, continued, stops at its next heartbeat."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    short = ("search=quick", "search.width.cap=16", "search.depth.cap=3", "search.regularization.trials=1", "search.final.seeds=1")  # (every stage, shortened)
    args = (*short, f"tracking.uri={uri}", "search.name=stopped", "tracking.lease_seconds=3")
    marker = tmp_path / "held"
    # Stopped with trials in flight, outside any record: held where its third trial's run is open, before it trains
    # (searcher/crash.py; records are the main thread's, and it is held), so where the stop lands does not depend on
    # timing. (A stop inside a record is test_a_process_that_lost_its_lease_closes_only_the_trials_..., below.)
    first = start_cli(*args, cwd=tmp_path, env={"SEARCHER_HOLD_AT": "trial.started:3", "SEARCHER_HOLD_MARKER": str(marker)})
    wait_for(lambda: marker.exists() or first.poll() is not None, every=0.1)
    assert first.poll() is None, first.stdout.read()[-3000:]
    # Not inside its lease heartbeat's write to the Optuna store, though: a SQLite writer frozen there holds a lock no
    # lease can take from it. Checked once frozen (both stores), and frozen again if it was there (a write of
    # milliseconds every half second).
    for _ in range(50):
        first.send_signal(signal.SIGSTOP)
        wait_for(lambda: frozen(first.pid), every=0.05)  # stopped for sure before the stores are looked at (not a moment after)
        if unlocked(tmp_path / "m.db") and unlocked(tmp_path / "optuna.db"):
            break
        first.send_signal(signal.SIGCONT)
        wait_for(lambda: not frozen(first.pid), every=0.05)
    else:
        pytest.fail("the held owner was inside a write to a store at each of 50 freezes")
    left_running = {r.info.run_id for r in search_runs(uri, "tags.`searcher.role` = 'trial'") if r.info.status == "RUNNING"}
    try:
        time.sleep(4)  # past the stopped owner's lease
        second = start_cli(*args, cwd=tmp_path)
        resumed = second.communicate(timeout=600)[0]
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 0, resumed[-3000:]
    assert f"was held by pid {first.pid} on host " in resumed and "no heartbeat for " in resumed
    said = first.communicate(timeout=120)[0]
    assert first.returncode == 1, said[-3000:]
    assert "lost search stopped to another one" in said

    runs = search_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    orphans = {r.info.run_id: r.data.tags for r in runs if r.data.tags.get("searcher.orphaned", "").startswith("left RUNNING by")}
    assert left_running and set(orphans) == left_running  # the trial in flight when it stopped, and only that
    for run in runs:  # (a trial it opened once continued, before it noticed: FAILED by itself, the new owner never saw it)
        if run.data.tags.get("searcher.orphaned", "").startswith("opened by"):
            assert run.data.tags["searcher.role"] == "trial" and run.info.status == "FAILED"
            assert run.data.tags["searcher.owner"].startswith(f"pid {first.pid} ")
    for tags in orphans.values():
        assert tags["searcher.owner"].startswith(f"pid {first.pid} ")  # the stopped owner's
        assert tags["searcher.orphaned"].startswith(f"left RUNNING by pid {first.pid} on host ")
        assert "whose lease was taken over (no heartbeat for" in tags["searcher.orphaned"]
    keys = trial_keys(uri)
    assert len(keys) == len(set(keys)), "a trial key has two FINISHED runs"
    (search,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert search.info.status == "FINISHED" and search.data.tags["searcher.owner"].startswith(f"pid {second.pid} ")


def test_a_process_that_lost_its_lease_closes_only_the_trials_it_opened_or_finished_after_the_new_owner_looked(tmp_path):
    """The new owner marks FAILED the runs it finds RUNNING when it takes over, and reopens the search's and the
    stages' runs; a trial the old owner opened after that is nobody's but its own to close, and one whose record it
    finished after that goes back to FAILED (the new owner retrains it)."""
    from searcher.model.family import LayerStack
    from searcher.search.trials import TrialOutcome, TrialRequest
    from searcher.tracking import open_recorder
    from searcher.train.trainer import TrainSettings

    old = open_recorder(f"sqlite:///{tmp_path / 'm.db'}", "searcher")
    client = old.client
    old.owner = "pid 1 on host old"
    train = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64)
    search = old.start_search("taken", params={}, tags={})
    stage = old._start("1 width", search, {"searcher.role": "stage", "searcher.stage": "width"})
    swept = old._start("w32 d2 #0", stage, {"searcher.role": "trial"})  # in flight when the new owner took over
    client.set_tag(swept, "searcher.orphaned", "left RUNNING by pid 1 on host old, whose lease was taken over")
    client.set_terminated(swept, "FAILED")
    later = old._start("w64 d2 #0", stage, {"searcher.role": "trial"})  # opened once it ran again, before it noticed
    # Stopped in the middle of this trial's record, continued after the takeover: the stop waits for the record, which
    # ends the run FINISHED over the new owner's FAILED (the flake hunt found it: the trial then had two FINISHED runs)
    recorded = old._start("w32 d2 #1", stage, {"searcher.role": "trial", "searcher.search_run_id": search})
    client.set_tag(recorded, "searcher.orphaned", "left RUNNING by pid 1 on host old, whose lease was taken over")
    client.set_terminated(recorded, "FAILED")
    old.finish_trial(recorded, TrialOutcome(TrialRequest("width", "w32 d2", LayerStack((32, 32)), train, 1, "fake"), "ok", None))
    assert client.get_run(recorded).info.status == "FINISHED"
    done = old._start("w16 d2 #0", stage, {"searcher.role": "trial", "searcher.search_run_id": search})  # ended before: left alone
    old.finish_trial(done, TrialOutcome(TrialRequest("baseline", "w16 d2", LayerStack((16, 16)), train, 0, "fake"), "ok", None))

    assert old.close_trials_left_behind("opened by pid 1 on host old after another process took the search over") == 2
    status = {run_id: client.get_run(run_id).info.status for run_id in (search, stage, swept, later, recorded, done)}
    assert status == {search: "RUNNING", stage: "RUNNING", swept: "FAILED", later: "FAILED", recorded: "FAILED", done: "FINISHED"}
    assert client.get_run(swept).data.tags["searcher.orphaned"].startswith("left RUNNING by")  # the new owner's word stays
    assert client.get_run(recorded).data.tags["searcher.orphaned"].startswith("left RUNNING by")
    assert client.get_run(later).data.tags["searcher.orphaned"].startswith("opened by pid 1 on host old after")
