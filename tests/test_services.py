"""The test services' scripts (scripts/postgres.sh, scripts/slurm.sh) as scripts/test.sh runs them: sourced
under `set -euo pipefail`. A service that cannot start must say so and let the suite run (its tests skip),
and a TMPDIR only the caller may enter must not stop the services' own accounts from using their folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AS_ROOT = os.geteuid() == 0


def sourced(script: str, start: str, tmpdir: Path, path: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`start` run as test.sh runs it, then one more line: whether the caller went on, and what it exported."""
    command = f"set -euo pipefail; source scripts/{script}; {start}; echo \"went on: ${{SEARCHER_TEST_POSTGRES_URL:-none}} ${{SEARCHER_TEST_SLURM_PARTITION:-none}}\""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "TMPDIR": str(tmpdir), **(extra_env or {})}
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def private_tmpdir(tmp_path: Path) -> Path:
    """A TMPDIR that only this user may enter, as the issue's CI runner had."""
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    return folder


def tools(folder: Path, failing: tuple[str, ...], working: tuple[str, ...] = ()) -> str:
    """A PATH whose first folder holds commands that fail (like a broken install) and commands that do nothing.
    The folder is one every account may enter: munged is started as the munge user, whose PATH lookup skips a
    folder it cannot enter (and would find the real munged)."""
    folder.mkdir(parents=True)
    for parent in (folder, *folder.parents):
        if parent == Path(tempfile.gettempdir()) or parent == parent.parent:
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    for name in failing + working:
        tool = folder / name
        tool.write_text("#!/bin/sh\necho \"$0: cannot start\" >&2\nexit 1\n" if name in failing else "#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


@pytest.mark.parametrize(
    ("failing", "working"),
    [(("munged", "slurmctld", "slurmd", "sbatch"), ()), (("slurmctld", "slurmd", "sbatch"), ("munged",))],
    ids=["munged-fails", "slurmctld-fails"],
)
def test_a_slurm_cluster_that_cannot_start_says_so_and_the_suite_goes_on(tmp_path, failing, working):
    """Each way the cluster fails to start, in a private TMPDIR: the script used to end the whole suite under
    pipefail (the tail of a log that was never written)."""
    path = tools(tmp_path / "bin", failing, working)
    result = sourced("slurm.sh", "slurm_start; slurm_stop", private_tmpdir(tmp_path), path)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "munged did not start" if "munged" in failing else "slurmctld or slurmd did not start"
    assert expected in result.stdout or not AS_ROOT, result.stdout
    assert "the SLURM tests will skip" in result.stdout
    assert result.stdout.strip().endswith("went on: none none"), result.stdout


def test_a_postgres_server_that_cannot_start_says_so_and_the_suite_goes_on(tmp_path):
    folder = tmp_path / "bin"
    tools(folder, ("initdb", "pg_ctl", "postgres"))
    result = sourced("postgres.sh", "postgres_start; postgres_stop", private_tmpdir(tmp_path), os.environ["PATH"], {"SEARCHER_POSTGRES_BIN": str(folder)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PostgreSQL did not start" in result.stdout and "the PostgreSQL test will skip" in result.stdout
    assert result.stdout.strip().endswith("went on: none none"), result.stdout


@pytest.mark.skipif(not AS_ROOT, reason="the services run as their own accounts only when the tests run as root")
@pytest.mark.parametrize("account", ["nobody", "munge"])
def test_a_service_folder_is_reachable_by_its_account_under_a_private_tmpdir(tmp_path, account):
    if subprocess.run(["id", "-u", account], capture_output=True).returncode != 0:
        pytest.skip(f"no {account} account on this machine")
    command = "source scripts/service_tmp.sh; folder=$(service_tmp " + account + "); runuser -u " + account + ' -- test -r "$folder" -a -x "$folder" && echo "$folder"'
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env={**os.environ, "TMPDIR": str(private_tmpdir(tmp_path))}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(result.stdout.strip())


@pytest.mark.skipif(not AS_ROOT, reason="PostgreSQL is started as `nobody` only when the tests run as root")
def test_postgres_starts_under_a_tmpdir_its_account_cannot_enter(tmp_path):
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL installed (scripts/postgres.sh installs it when the suite starts as root)")
    result = sourced("postgres.sh", "postgres_start; trap postgres_stop EXIT", private_tmpdir(tmp_path), os.environ["PATH"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "for the tests on 127.0.0.1:" in result.stdout and "went on: postgresql://searcher:" in result.stdout, result.stdout
