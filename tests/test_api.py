"""searcher.search(...): the staged search from Python, with the command line's settings, record and resume."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import search_runs
from mlflow.tracking import MlflowClient
from rich.console import Console

import searcher

FINISHED_TRIAL = re.compile(r"^  \w+\s+score \d\.\d{4} at ", re.MULTILINE)


def test_search_from_python_resumes_the_command_lines_search_and_returns_its_record(quick_search, tmp_path):
    """The same overrides as the command that ran `quick_search`: nothing is trained again, and what comes back
    (run id, test accuracy, decisions, model) is that command's record."""
    _, uri, _ = quick_search
    trials_before = len(search_runs(uri, "tags.`searcher.role` = 'trial'"))
    said = io.StringIO()
    found = searcher.search(
        "search=quick", "execution=serial", f"tracking.uri={uri}", "search.name=check", output_dir=tmp_path / "out", console=Console(file=said, width=120)
    )
    (search_run,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert "already complete: nothing to train" in said.getvalue() and f"model:      {found.model_uri}" in said.getvalue()
    assert len(search_runs(uri, "tags.`searcher.role` = 'trial'")) == trials_before
    assert found.run_id == search_run.info.run_id and found.search_name == "check"
    assert found.test_acc == search_run.data.metrics["test_acc"]
    recorded = json.loads(Path(MlflowClient(tracking_uri=uri).download_artifacts(found.run_id, "decisions.json", str(tmp_path))).read_text())
    assert list(found.decisions) == recorded
    assert found.model_uri == "models:/searcher-digits/1"
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(found.model(images), searcher.load_model(found.model_uri, uri)(images))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("search=nope", "search/nope"),
        ("dataset.classes=[0,1]", "add +dataset=NAME before it"),
        ("train.stability.min_epochs=-1", "train.stability.min_epochs"),
        ("tracking.uri=notascheme", "tracking.uri"),
    ],
)
def test_bad_settings_raise_one_sentence_with_the_command_lines_exit_code(override, named, tmp_path):
    with pytest.raises(searcher.SearchError) as raised:
        searcher.search(override, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}" if "tracking" not in override else "seed=0", output_dir=tmp_path)
    assert raised.value.exit_code == 2 and named in str(raised.value) and "\n" not in str(raised.value).strip()


def test_a_search_from_python_without_a_terminal_prints_plain_lines_and_records_as_the_command_line(tmp_path):
    """A whole (small) search from a Python process whose output is a pipe: no control characters, one line per
    finished trial, and a record the command line would have written: search, stage and trial runs, a model."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    program = (
        "import searcher\n"
        f"found = searcher.search('search=quick', '+dataset=digits', 'dataset.classes=[0,1,2]', 'execution=serial', 'tracking.uri={uri}', 'search.name=api')\n"
        "print('RESULT', found.run_id, found.test_acc, type(found.model).__name__, len(found.decisions))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.stdout), "control characters in output without a terminal"
    assert "Created version" not in result.stdout + result.stderr, "MLflow's INFO lines go to the log, as on the command line"
    _, run_id, test_acc, model_type, decisions = result.stdout.strip().splitlines()[-1].split()
    (search_run,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    assert run_id == search_run.info.run_id and float(test_acc) == search_run.data.metrics["test_acc"]
    assert model_type == "Classifier" and int(decisions) > 0
    assert len(FINISHED_TRIAL.findall(result.stdout)) == len(trials) > 0
    assert {r.data.tags["searcher.stage"] for r in search_runs(uri, "tags.`searcher.role` = 'stage'")} >= {"baseline", "width", "depth", "final"}
    assert list(tmp_path.glob("outputs/*/*/decisions.md")), "the decision log is written to the output folder"


def test_a_refused_search_leaves_no_output_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(searcher.SearchError, match="nope.csv") as raised:
        searcher.search("+dataset=table", f"dataset.path={tmp_path / 'nope.csv'}", "dataset.target=y", f"tracking.uri=sqlite:///{tmp_path}/runs.db")
    assert raised.value.exit_code == 2
    assert list((tmp_path / "outputs").glob("*/*")) == []  # (the command line leaves none either)
