"""The command line explains itself: --help, mistakes named with what to do, no folder for a rejected command, completion."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli
from PIL import Image


def test_help_describes_the_tool_and_lists_every_dataset_preset_and_common_setting(tmp_path: Path):
    result = run_cli("--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("searcher: staged") and "powered by Hydra" not in text
    for dataset in (REPO / "conf" / "dataset").glob("*.yaml"):
        assert f"\n  {dataset.stem} " in text, f"--help does not describe +dataset={dataset.stem} (conf/hydra/help/searcher.yaml)"
    assert "search=default | quick" in text
    executions = sorted(execution.stem for execution in (REPO / "conf" / "execution").glob("*.yaml"))
    listed = text.split("execution=")[1].split("\n")[0].split(" | ")
    assert sorted(listed) == executions, f"--help lists execution={' | '.join(listed)}, conf/execution/ has {executions}"
    settings = text.split("== Most used settings ==")[1].split("== Examples ==")[0]
    assert len([line for line in settings.splitlines() if line.startswith("  ") and "=" in line.split()[0]]) == 10
    assert "train.lr=0.1" in settings and "[auto]" in settings  # an example and the current value
    assert "[0.1]" in run_cli("train.lr=0.1", "--help", cwd=tmp_path, timeout=60).stdout.split("== Most used settings ==")[1]
    claims = measured_claims()
    assert f"default preset ({claims['default']})" in text and f"a short one ({claims['quick']})" in text
    assert set(TIME_CLAIM.findall(text)) == set(claims.values()), "--help states a search time docs/BENCHMARKS.md §6 did not measure"


TIME_CLAIM = re.compile(r"[\d.]+(?:-[\d.]+)? (?:s|min|minutes) on 2 (?:quiet )?CPU cores")


def measured_claims() -> dict[str, str]:
    """What docs/BENCHMARKS.md §6 measured, as --help and the README are to quote it: {'default': ..., 'quick': ...}."""
    section = (REPO / "docs" / "BENCHMARKS.md").read_text().split("\n## 6.")[1].split("\n## ")[0]
    return dict(re.findall(r'`(default|quick)`: "([^"]+)"', section))


def test_the_readme_quotes_the_measured_search_times_and_no_others():
    claims = measured_claims()
    assert set(claims) == {"default", "quick"}
    readme = (REPO / "README.md").read_text()
    assert set(TIME_CLAIM.findall(readme)) == set(claims.values())


@pytest.mark.parametrize(
    "args,message",
    [
        (["dataset=cifar10"], "dataset=cifar10: choose a dataset with a plus, +dataset=cifar10"),
        (["dataset.classes=[0,1]"], "dataset.classes=[0,1] needs a dataset chosen first: add +dataset=NAME before it"),
        (["train.lr=abc"], "train.lr='abc' is not valid: expected a number or auto."),
    ],
)
def test_a_rejected_command_says_what_to_do_and_leaves_no_output_folder(tmp_path: Path, args, message):
    result = run_cli(*args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, no empty cli.log, no store


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device=cuda is valid here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_cuda_without_cuda_exits_2_before_any_folder_or_store_exists(tmp_path: Path, device):
    result = run_cli(f"device={device}", "search=quick", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: device={device} but this machine has no CUDA device torch can use; use device=auto" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder, no mlflow.db, no optuna.db


REFUSED_LATE = {  # refused once the search opens its data and stores, after Hydra made the output folder
    "missing folder": ["+dataset=imagefolder", "dataset.path={tmp}/no-such-folder"],
    "a file": ["+dataset=imagefolder", "dataset.path={tmp}/file.txt"],
    "one class": ["+dataset=imagefolder", "dataset.path={tmp}/one-class"],
    "an empty class": ["+dataset=imagefolder", "dataset.path={tmp}/empty-class"],
    "a class not there": ["+dataset=digits", "dataset.classes=[0,42]"],
    "no scheme": ["tracking.uri=notascheme"],
    "file store": ["tracking.uri=file:///x"],
    "postgresql without optuna_storage": ["tracking.uri=postgresql://alice@127.0.0.1:1/db"],
    "unusable data_dir": ["+dataset=mnist", "data_dir=/proc/nope"],
}


@pytest.mark.parametrize("case", REFUSED_LATE)
def test_a_command_refused_after_its_folder_was_made_leaves_no_folder_and_no_store(tmp_path: Path, case):
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    (data / "one-class" / "cat").mkdir(parents=True)
    (data / "file.txt").write_text("not a folder")
    (data / "empty-class" / "dog").mkdir(parents=True)
    (data / "empty-class" / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(data / "empty-class" / "cat" / "a.png")
    result = run_cli(*(arg.format(tmp=data) for arg in REFUSED_LATE[case]), "search=quick", cwd=work, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and "Traceback" not in result.stdout + result.stderr
    assert list(work.iterdir()) == []  # no outputs/, no mlflow.db


def test_a_command_refused_for_a_search_another_process_holds_leaves_no_folder(tmp_path: Path):
    from searcher.tracking.lease import acquire

    work, stores = tmp_path / "work", tmp_path / "stores"
    work.mkdir()
    stores.mkdir()
    lease = acquire(f"sqlite:///{stores / 'optuna.db'}", "held", 60)  # this process holds search "held"
    try:
        result = run_cli("search=quick", f"tracking.uri=sqlite:///{stores / 'm.db'}", "search.name=held", cwd=work, timeout=120)
    finally:
        lease.release()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"search.name=held is in use by pid {os.getpid()}" in result.stderr
    assert list(work.iterdir()) == []  # no outputs/


def test_an_output_folder_that_was_there_before_is_left_alone(tmp_path: Path):
    folder = tmp_path / "out"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "cli.log").write_text("an earlier command\n")
    result = run_cli("+dataset=imagefolder", f"dataset.path={tmp_path / 'nope'}", f"hydra.run.dir={folder}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (folder / "cli.log").read_text().startswith("an earlier command\n")


def test_two_commands_started_at_once_get_a_folder_each(tmp_path: Path):
    """Output folders were named by the second: two commands started in the same one shared it, and one's cli.log
    held both commands' lines."""
    import signal

    from conftest import wait_for

    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "searcher", "search=quick", f"search.name=s{i}", f"tracking.uri=sqlite:///{tmp_path / f'm{i}.db'}"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]

    def commands() -> list[str]:
        return [line for log in work.glob("outputs/*/*/cli.log") for line in log.read_text().splitlines() if "command: searcher" in line]

    try:
        wait_for(lambda: len(commands()) == 2, timeout=120, every=0.2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    logs = sorted(work.glob("outputs/*/*/cli.log"))
    assert len(logs) == 2, logs
    assert [sum("command: searcher" in line for line in log.read_text().splitlines()) for log in logs] == [1, 1]


def complete(line: str) -> list[str]:
    """What pressing TAB at the end of `line` offers, from the installed bash completion, in a real bash."""
    python = shlex.quote(sys.executable)
    script = f"""
        eval "$({python} -m searcher -sc install=bash)"
        COMP_LINE={shlex.quote(line)}
        _searcher_complete
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_works_for_python_dash_m_searcher_and_offers_datasets_with_the_plus():
    prefix = f"{sys.executable} -m searcher"
    datasets = complete(f"{prefix} +dataset=")
    assert "+dataset=cifar10" in datasets and "+dataset=digits" in datasets
    assert "search=quick" in complete(f"{prefix} +dataset=digits search=")
    assert "train.lr=" in complete(f"{prefix} train.l")
    assert not [choice for choice in complete(f"{prefix} da") if choice.startswith("dataset=")]  # would be rejected
    assert "+dataset=" in complete(f"{prefix} ") and "seed=" in complete(f"{prefix} ")
    assert complete("python -m pip inst") == []  # other Python commands: left to bash's file completion


@pytest.mark.skipif(not (Path(sys.executable).parent / "searcher").exists(), reason="the searcher console script is not installed here")
def test_completion_works_for_the_console_script():
    assert "search=quick" in complete("searcher search=")


def test_library_messages_go_to_cli_log_and_only_their_warnings_to_the_terminal(tmp_path: Path):
    """conf/hydra/job_logging/searcher.yaml as the command uses it: matplotlib's "generated new fontManager" (a first
    run's report) and MLflow's table creation reached the terminal in the middle of the summary; they belong in cli.log."""
    program = f"""
import logging, logging.config, yaml
config = yaml.safe_load(open({str(REPO / "conf/hydra/job_logging/searcher.yaml")!r}))
config["handlers"]["file"]["filename"] = {str(tmp_path / "cli.log")!r}
logging.config.dictConfig(config)
logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
logging.getLogger("matplotlib.font_manager").warning("a font is missing")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "fontManager" not in result.stdout + result.stderr and "Creating initial" not in result.stdout + result.stderr
    assert "a font is missing" in result.stdout
    logged = (tmp_path / "cli.log").read_text()
    assert "generated new fontManager" in logged and "Creating initial MLflow database tables" in logged


@pytest.mark.skipif(not (Path(sys.executable).parent / "searcher").exists(), reason="the searcher console script is not installed here")
def test_the_console_script_imports_your_family_from_the_current_folder_as_python_m_does(tmp_path: Path):
    (tmp_path / "my_family.py").write_text(
        "import dataclasses, searcher\n\n@dataclasses.dataclass(frozen=True)\nclass Tower(searcher.Family):\n    kernel: int = 3\n"
    )
    (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    command = [str(Path(sys.executable).parent / "searcher"), "+dataset=table", "dataset.path=t.csv", "dataset.target=y", "model=custom",
               "model._target_=my_family.Tower", "+model.kernel=abc", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "model.kernel='abc' is not an int (Tower.kernel)" in result.stderr  # imported (not "cannot be imported"), then checked
    assert "error:" not in result.stdout
