"""The benchmark scripts: the joint space they search, the budget they keep, the JSON they write."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import REPO

from searcher.train.stability import StabilityRule

# The benchmark scripts as their docs run them: on a busy machine two torch threads spin-wait for each other (the
# throughput script at load 6: 53 s and 27 s of CPU with two, 21 s and 6 s with one), and their plumbing is the point here.
ONE_TORCH_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


def load_script(name: str):
    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))  # as `python scripts/NAME.py` has it, for their shared benchlib
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench_search = load_script("bench_search")


def tiny_setup(tmp_path: Path, epochs: int = 2, final_seeds: int = 1, preset_quick: bool = True):
    args = argparse.Namespace(quick=preset_quick, dataset="digits", device="cpu", overrides=[])
    config = bench_search.compose(args, seed=0, folder=str(tmp_path))
    shared = bench_search.setup(config)
    rule = StabilityRule(window=1, min_epochs=epochs, max_epochs=epochs)
    plan = replace(shared.plan, final_seeds=final_seeds, train=replace(shared.plan.train, stability=rule))
    return bench_search.Setup(config, plan, shared.data)


def test_joint_space_uses_the_staged_layout_and_grid(tmp_path):
    shared = tiny_setup(tmp_path, preset_quick=False)
    plan = shared.plan
    assert bench_search.width_grid(plan) == [16, 32, 64, 128]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    depths = set()
    for _ in range(40):
        arch, train = bench_search.sample(study.ask(), plan)
        depths.add(arch.depth)
        assert plan.baseline_depth <= arch.depth <= plan.depth_cap
        assert set(arch.widths) <= {16, 32, 64, 128}
        same_layout = plan.family.baseline(arch.depth, 16, plan.input_shape)  # kernels and halving depend on position only
        assert arch.kernels == same_layout.kernels and [layer.halves for layer in arch.layers] == [
            layer.halves for layer in same_layout.layers
        ]
        ranges = {r.name: (r.low, r.high) for r in plan.regularizers}
        assert ranges["dropout"][0] <= arch.dropout <= ranges["dropout"][1]
        assert ranges["weight_decay"][0] <= train.weight_decay <= ranges["weight_decay"][1]
        assert train.lr == plan.train.lr and train.batch_size == plan.train.batch_size
    assert len(depths) > 1


def test_anytime_curve_is_the_running_best_over_cumulative_compute():
    curve = bench_search.anytime_curve([(10, 0.5), (5, None), (20, 0.4), (10, 0.7)])
    assert curve == [[10, 0.5], [15, 0.5], [35, 0.5], [45, 0.7]]
    assert bench_search.best_within(curve, 40) == 0.5 and bench_search.best_within(curve, 5) is None


def test_the_gp_sampler_gets_every_layers_width_as_a_fixed_dimension(tmp_path):
    plan = tiny_setup(tmp_path, preset_quick=False).plan
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(10):
        trial = study.ask()
        arch, _ = bench_search.sample(trial, plan, fixed=True)
        assert {f"width_step_{i}" for i in range(plan.depth_cap)} <= set(trial.params)  # the unused ones too
        assert arch.widths == tuple(bench_search.width_grid(plan)[trial.params[f"width_step_{i}"]] for i in range(arch.depth))


@pytest.mark.parametrize("method", ["gp", "tpe_default"])
def test_the_gp_and_default_tpe_peers_are_optunas_samplers_on_the_joint_space(tmp_path, method):
    """(run_joint trains the same way for every sampler: tested below on three of them; here only what differs)"""
    plan = tiny_setup(tmp_path, preset_quick=False).plan
    study = bench_search.make_study(method, 0, plan)
    assert type(study.sampler) is {"gp": optuna.samplers.GPSampler, "tpe_default": optuna.samplers.TPESampler}[method]
    for number in range(12):  # past the samplers' 10 random start-up trials: the model proposes the last ones
        trial = study.ask()
        arch, _ = bench_search.sample(trial, plan, fixed=method == "gp")
        study.tell(trial, 0.5 + 0.01 * arch.depth + 0.001 * number)
    assert len(study.trials) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("method", ["tpe", "random", "tpe_hyperband"])
def test_a_baseline_spends_exactly_its_budget_then_retrains_its_pick(tmp_path, method):
    shared = tiny_setup(tmp_path, epochs=2, final_seeds=1)
    images = shared.train_images
    record = bench_search.run_joint(method, shared, budget=5 * images, seed=0)
    assert record["compute"] == 5 * images  # 2 + 2 epochs, then a trial cut after 1 by the budget
    computes = [point[0] for point in record["curve"]]
    assert computes == sorted(computes) and computes[-1] == 5 * images
    scores = [point[1] for point in record["curve"] if point[1] is not None]
    assert scores == sorted(scores) and record["best_val_acc"] == scores[-1]
    assert record["final_compute"] == 2 * images and 0.0 <= record["test_acc"] <= 1.0


def test_dehb_trains_each_configuration_for_its_fidelity_within_the_budget_then_retrains_its_pick(tmp_path):
    pytest.importorskip("dehb", reason="DEHB is installed by scripts/test.sh (pip install --no-deps: it pins numpy<2)")
    shared = tiny_setup(tmp_path, epochs=3, final_seeds=1)  # every trial stable at 3 epochs: DEHB's fidelities 1 and 3 (eta 3)
    images = shared.train_images
    space = bench_search.configuration_space(shared.plan, seed=0)
    widths = len(bench_search.width_grid(shared.plan))
    assert {h.name for h in space.values()} == {"depth", *(f"width_step_{i}" for i in range(shared.plan.depth_cap)), *(r.name for r in shared.plan.regularizers)}
    assert all(space[f"width_step_{i}"].upper == widths - 1 for i in range(shared.plan.depth_cap))
    record = bench_search.run_dehb(shared, budget=8 * images, seed=0, output=str(tmp_path / "dehb"))
    epochs = [round(b[0] / images) - round(a[0] / images) for a, b in zip([[0, None], *record["curve"]], record["curve"], strict=False)]
    assert record["compute"] == 8 * images and sum(epochs) == 8
    assert set(epochs[:-1]) <= {1, 3} and 1 in epochs  # Hyperband's rungs: a configuration trains for its fidelity (the last one is cut by the budget)
    assert record["trials"] == len(epochs) > 3 and record["final_compute"] == 3 * images and 0.0 <= record["test_acc"] <= 1.0


def test_throughput_runs_without_optuna_mlflow_or_hydra(tmp_path):
    out = tmp_path / "throughput.json"
    blocked = ["optuna", "mlflow", "hydra", "omegaconf"]
    code = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(REPO / 'scripts')!r})\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # importing any of them now fails\n"
        f"sys.argv = ['bench_throughput.py', '--out', {str(out)!r}, '--epochs', '1', '--repeats', '1', '--models', 'baseline,mid']\n"
        f"runpy.run_path({str(REPO / 'scripts' / 'bench_throughput.py')!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ONE_TORCH_THREAD)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["dataset"] == "digits"
    for name in ("baseline", "mid"):
        row = report["models"][name]
        assert row["trainer_img_s"] > 0 and row["handwritten_img_s"] > 0
        assert row["ratio"] == pytest.approx(row["trainer_img_s"] / row["handwritten_img_s"])


def test_synthetic_cifar_is_cifar_shaped_uint8():
    bench_throughput = load_script("bench_throughput")
    dataset = bench_throughput.synthetic_cifar(train_images=300, val_images=100, test_images=50)
    assert dataset.train.images.shape == (300, 3, 32, 32) and dataset.train.images.dtype.is_floating_point is False
    assert len(dataset.val) == 100 and len(dataset.test()) == 50 and dataset.num_classes == 10 and dataset.flip
    assert set(dataset.train.labels.tolist()) == set(range(10))


@pytest.mark.slow
def test_bench_search_writes_the_promised_json(tmp_path):
    out = tmp_path / "search.json"
    tiny = [
        "search.regularization.trials=1",
        "search.final.seeds=1",
        "search.depth.cap=3",
        "train.stability.min_epochs=2",
        "train.stability.max_epochs=2",
        "train.stability.window=1",
    ]
    command = [
        sys.executable,
        str(REPO / "scripts" / "bench_search.py"),
        "--out",
        str(out),
        "--quick",
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--methods",  # (gp and tpe_default: tested on their samplers, without training)
        "tpe,random,tpe_hyperband",
        *tiny,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ONE_TORCH_THREAD)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    staged = report["methods"]["staged"]["seeds"][0]
    for name in ("staged", "tpe", "random", "tpe_hyperband"):
        (record,) = report["methods"][name]["seeds"]
        assert {"test_acc", "best_val_acc", "compute", "curve"} <= set(record)
        assert {"test_acc_mean", "test_acc_std", "compute_mean"} <= set(report["summary"][name])
        assert record["curve"][-1][0] == record["compute"]
    assert staged["compute"] > 0 and staged["compute"] % report["train_images"] == 0
    assert report["methods"]["tpe"]["seeds"][0]["compute"] >= 2 * staged["compute"]
    assert report["targets"]["compute_target_met"] is True
    assert "| staged |" in result.stdout
    assert {"optimism_mean"} <= set(report["summary"]["staged"]) and "hyperband_target_met" in report["targets"]
    # two processes' results (here: the same run twice) summarised as one
    merged = tmp_path / "merged.json"
    command = [sys.executable, str(REPO / "scripts" / "bench_search.py"), "--out", str(merged), "--merge", str(out), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    both = json.loads(merged.read_text())
    assert both["methods"] == report["methods"] and both["seeds"] == [0]  # a seed run twice is one seed
    assert both["summary"]["staged"]["test_acc_mean"] == pytest.approx(report["summary"]["staged"]["test_acc_mean"])


def bench_report(seeds: dict[int, dict[str, float]], preset: str = "quick") -> dict:
    """A bench_search result file as it writes one: per method, one record per seed (only the fields merge reads)."""
    methods: dict[str, dict] = {}
    for seed, tests in seeds.items():
        for name, test in tests.items():
            compute = 100 if name == "staged" else 300
            record = {
                "seed": seed,
                "test_acc": test,
                "selected_val_acc": test + 0.01,
                "best_val_acc": test + 0.02,
                "compute": compute,
                "curve": [[compute, test + 0.02]],
                "trials": 3,
                "train_seconds": 1.0,
            }
            methods.setdefault(name, {"seeds": []})["seeds"].append(record)
    setup = {"dataset": "digits", "preset": preset, "budget_factor": 3.0, "overrides": [], "train_images": 100, "final_seeds": 2}
    return setup | {"seeds": list(seeds), "metric": None, "methods": methods, "wall_seconds": 5.0, "command": "x"}


def test_merge_adds_peers_to_recorded_seeds_and_refuses_what_does_not_pair(tmp_path):
    files = {
        "first": bench_report({1: {"staged": 0.9, "random": 0.8}, 2: {"staged": 0.7, "random": 0.6}}),
        "peers": bench_report({1: {"staged": 0.9, "tpe": 0.85}, 2: {"staged": 0.7, "tpe": 0.65}}),  # staged re-run: the same
        "more": bench_report({3: {"staged": 0.5, "random": 0.4, "tpe": 0.45}}),
        "other code": bench_report({1: {"staged": 0.95, "tpe": 0.85}}),
        "a seed short": bench_report({4: {"staged": 0.5, "random": 0.4}}),
        "default preset": bench_report({3: {"staged": 0.5, "random": 0.4, "tpe": 0.45}}, preset="default"),
    }
    paths = {}
    for name, report in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(report))
    out = tmp_path / "merged.json"
    bench_search.merge([paths["first"], paths["peers"], paths["more"]], out)
    merged = json.loads(out.read_text())
    assert merged["seeds"] == [1, 2, 3] and list(merged["methods"]) == ["staged", "random", "tpe"]
    assert [r["test_acc"] for r in merged["methods"]["tpe"]["seeds"]] == [0.85, 0.65, 0.45]
    assert merged["summary"]["random"]["test_acc_mean"] == pytest.approx(0.6)
    assert merged["targets"]["staged_minus_tpe_test_acc_points"] == pytest.approx(5.0)
    refused = {"other code": "staged on seed 1 differs", "a seed short": "no result for tpe on seed 4", "default preset": "differ in preset"}
    for bad, says in refused.items():
        with pytest.raises(SystemExit, match=says):
            bench_search.merge([paths["first"], paths["peers"], paths[bad]], out)


FAKE_NVIDIA_SMI = """#!/bin/sh
# What `nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1` prints: two GPUs, a round a tick.
while true; do echo "0, 40, 1000"; echo "1, 60, 3000"; sleep 0.2; done
"""


@pytest.mark.slow
def test_bench_gpu_search_runs_labelled_searches_and_writes_their_json(tmp_path):
    """On the CPU, as the GPU run's commands are checked before it; a stand-in nvidia-smi (this machine has none) is sampled."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (tools / "nvidia-smi").chmod(0o755)
    out = tmp_path / "gpu_search.json"
    tiny = ["search=quick", "search.width.cap=16", "search.depth.cap=2", "search.regularization.trials=0", "search.final.seeds=1", "report.enabled=false",
            "train.stability.max_epochs=8"]
    command = [sys.executable, str(REPO / "scripts" / "bench_gpu_search.py"), "--out", str(out), *tiny, "--run", "auto", "--run", "set", "train.batch_size=32", "train.lr=0.1"]
    # OMP_NUM_THREADS=1: auto is serial on any machine (else a trial thread a core), so the slots below are one slot's
    env = dict(ONE_TORCH_THREAD, PATH=f"{tools}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == report["hardware"].get("gpu", report["hardware"]["cpu"])
    auto, chosen = report["runs"]
    assert [auto["label"], chosen["label"]] == ["auto", "set"] and auto["exit_code"] == chosen["exit_code"] == 0
    assert auto["command"].startswith("python -m searcher search=quick") and "train.batch_size=32" in chosen["command"]
    for run in (auto, chosen):
        assert run["trials"] == 2 and 0 < run["search_seconds"] < run["wall_seconds"] and 0 <= run["test_acc"] <= 1
        assert set(run["stage_seconds"]) == {"0 baseline", "1 width", "2 depth", "3 regularization", "4 final"}
        assert run["gpus_sampled"] == 2 and run["gpu_memory_used_mib_max"] == 4000
        assert run["utilization_search"]["mean"] == run["utilization_search"]["median"] == 50  # the mean over both GPUs
        assert run["utilization_search"]["samples"] >= 1 and run["utilization_wall"]["samples"] >= run["utilization_search"]["samples"]
        phases = run["phases"]  # consecutive: they add up to the wall time
        assert list(phases) == ["start->announced", "announced->first_stage", "first_stage->last_stage_end", "last_stage_end->model_logged", "model_logged->end"]
        assert sum(phases.values()) == pytest.approx(run["wall_seconds"], abs=0.1) and all(value >= -0.5 for value in phases.values())
        assert [message.split(":")[0] for _, message in run["start_timeline"]] == [
            "dataset loaded", "MLflow imported (beside the data), waited", "execution chosen (auto)", "tracking store open"
        ]
        slots = run["slots"]  # serial: one slot, busy while its two trials trained
        assert slots["capacity"] == 1 and slots["discarded_seconds"] == 0 and slots["guesses_used"] == slots["guesses_discarded"] == 0
        assert slots["useful"] + slots["idle"] == pytest.approx(1.0) and 0.3 < slots["useful"] <= 1.0
    assert auto["auto_lines"][0] == "training: batch 64, lr 0.05 (auto for cpu: 18 steps/epoch)"
    assert auto["auto_lines"][1].startswith("execution: auto → serial (cpu, 1 core") and len(auto["auto_lines"]) == 2
    assert auto["warning_lines"] == []  # e.g. no failed check of the logged model's input example
    assert auto["resolved"] | {"device": None} == {
        "train.batch_size": "64", "train.lr": "0.05", "execution.kind": "serial", "execution.workers": "None",
        "execution.trials_per_gpu": "1", "device": None, "device_used": "cpu",
    }
    assert (chosen["resolved"]["train.batch_size"], chosen["resolved"]["train.lr"]) == ("32", "0.1")


def test_the_estimates_error_is_read_from_cli_log_against_the_last_trial_and_the_commands_end():
    bench_eta = load_script("bench_eta")
    log = "\n".join(
        [
            "[2026-12-03 08:58:19,317][searcher.cli][INFO] - command: searcher ",
            "[2026-12-03 08:58:29,000][searcher.report.terminal][INFO] - after 1 trials (w16 d2, stage 0): 40.0-1300.0 s left at 0.06 s per width unit",
            "[2026-12-03 08:59:59,000][searcher.report.terminal][INFO] - after 2 trials (w32 d2 r1, stage 1): 100.0-200.0 s left at 0.05 s per width unit",
            "[2026-12-03 09:01:29,000][searcher.report.terminal][INFO] - after 3 trials (final seed 0, stage 4): 0.0-0.0 s left at 0.05 s per width unit",
            "[2026-12-03 09:01:39,000][searcher.cli][INFO] - search x done (exit 0): test_acc 0.9861; model models:/searcher-digits/1",
        ]
    )
    table, tail = bench_eta.rows(log)
    assert [(row["real"], row["real_to_command_end"]) for row in table] == [(180.0, 190.0), (90.0, 100.0), (0.0, 10.0)]
    assert [row["shown"] for row in table] == ["~40 s-22 min left", "~1-4 min left", "a few seconds left"] and tail == 10.0
    assert [row["low"] <= row["real"] <= row["high"] for row in table] == [True, False, True]


def test_anytime_curves_hold_each_seeds_best_and_are_drawn_per_result(tmp_path):
    anytime = load_script("plot_anytime")
    result = {
        "dataset": "table", "preset": "quick", "metric": {"name": "rmse", "task": "regression"},
        "methods": {
            "staged": {"seeds": [{"compute": 100, "curve": [[50, 0.5], [100, 0.4]]}, {"compute": 100, "curve": [[20, 0.7], [100, 0.9]]}]},
            "tpe": {"seeds": [{"compute": 200, "curve": [[10, 0.1], [150, 0.8], [200, 0.2]]}, {"compute": 200, "curve": [[30, 0.3], [200, 0.6]]}]},
        },
    }
    grid, means = anytime.mean_curves(result)  # compute in units of the staged mean (100)
    assert grid[0] == 0 and grid[-1] == 2.0

    def mean(method, x):
        return means[method][int(np.argmin(np.abs(grid - x)))]
    assert np.isnan(mean("staged", 0.3))  # the first seed has no trial yet
    assert mean("staged", 0.6) == pytest.approx((0.5 + 0.7) / 2)  # a worse later trial does not lower the best
    assert mean("staged", 1.0) == pytest.approx((0.5 + 0.9) / 2) and np.isnan(mean("staged", 1.5))  # ended at 1
    assert mean("tpe", 1.6) == pytest.approx((0.8 + 0.3) / 2) and mean("tpe", 2.0) == pytest.approx((0.8 + 0.6) / 2)
    assert anytime.title(result) == "table quick, regression"
    out = tmp_path / "anytime.png"
    anytime.plot([result, {**result, "metric": None}], ["a", "b"], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_anytime_curve_ends_at_the_best_of_every_seeds_last_trial():
    """Seeds that end at computes a float division does not undo (those of synthetic_hard's staged searches): the mean
    curve's last point still counts the last trial of the longest seed (it dropped it once)."""
    anytime = load_script("plot_anytime")
    computes, bests = (1_224_000, 1_240_000, 1_336_000), (0.9365, 0.9265, 0.9385)
    seeds = [{"compute": c, "curve": [[c // 2, 0.5], [c, best]]} for c, best in zip(computes, bests, strict=True)]
    grid, means = anytime.mean_curves({"methods": {"staged": {"seeds": seeds}}})
    drawn = np.isfinite(means["staged"])
    assert grid[drawn][-1] == pytest.approx(max(computes) / np.mean(computes))
    assert means["staged"][drawn][-1] == pytest.approx(np.mean(bests))


def test_replaying_the_stopping_rule_on_a_recorded_search_stops_every_trial_where_it_stopped(quick_search, tmp_path):
    """scripts/replay_stopping.py: the current rule, replayed on the recorded curves, reproduces every recorded stop
    (it exits 1 where one differs), a rule that ignores the training loss never trains longer, and --search-only
    leaves the final stage's trials out."""
    _, uri, _ = quick_search
    out = tmp_path / "replay.json"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "replay_stopping.py"), uri, "--variant", "long window:window=8", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (replayed,) = json.loads(out.read_text())
    variants = replayed["variants"]
    assert replayed["trials"] >= 5 and not replayed["replay_mismatches"]
    assert 0 <= replayed["past_a_window_epochs"] <= replayed["after_kept_epochs"] < replayed["recorded_epochs"]
    assert variants["current"]["epochs"] == replayed["recorded_epochs"] and variants["current"]["score_changed"] == 0
    assert variants["validation only (training loss ignored)"]["epochs"] <= replayed["recorded_epochs"]
    assert variants["long window"]["epochs"] == replayed["recorded_epochs"]  # (a longer window cannot stop before the end of the record)
    search_only = subprocess.run([sys.executable, str(REPO / "scripts" / "replay_stopping.py"), uri, "--search-only", "--out", str(out)],
                                 capture_output=True, text=True, timeout=300)
    assert search_only.returncode == 0, search_only.stdout[-2000:] + search_only.stderr[-2000:]
    (searched,) = json.loads(out.read_text())  # the final stage's trials left out: the compute bench_search counts
    assert 0 < searched["trials"] < replayed["trials"] and searched["recorded_epochs"] < replayed["recorded_epochs"]
