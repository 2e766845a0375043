"""What would another stopping rule have cost and changed? Replayed on recorded searches, nothing trained.

    python scripts/replay_stopping.py sqlite:///mlflow.db [more stores...] [--variant NAME:FIELD=VALUE,...]

A trial's curve up to epoch k does not depend on when it is stopped (the learning rate halves on the validation
curve, not on the stopping rule), so the recorded curves of every trial that ended stable, overfitting or capped
answer exactly, for any `StabilityRule`: at which epoch it would have stopped, whether its kept (best-validation)
epoch would be another, and whether its score (the best 3-epoch mean, searcher/train/score.py) would move. A trial
whose kept epoch and score are both unchanged gives the decisions the same evidence; the others might change a
decision, which only a search run with the rule can tell. The current rule is replayed first: every trial must
stop where it did (else the replay is wrong and the script says which trial).

Printed per store: the epochs after each trial's kept epoch, and of them those more than a window after it: no rule
that keeps every kept epoch and sees a window of epochs past it before stopping can save more than the latter. Per
variant: epochs trained (and as a share of the recorded ones), trials whose kept epoch changed, trials whose score
moved (and the largest move). docs/BENCHMARKS.md §9 quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searcher.tracking.reader import read_search, with_curves  # noqa: E402
from searcher.tracking.store import client_for  # noqa: E402
from searcher.train.metrics import Metric  # noqa: E402
from searcher.train.score import trial_score  # noqa: E402
from searcher.train.stability import StabilityRule, judge  # noqa: E402

REPLAYED = ("stable", "overfitting", "unstable", "capped")  # ended by the rule (pruned, diverged and failed trials by something else)
VARIANTS = {
    "current": {},
    "validation only (training loss ignored)": {"loss_floor": 1e9},
    "loss_tolerance 0.2": {"loss_tolerance": 0.2},
    "loss_floor 0.2": {"loss_floor": 0.2},
    "window 4": {"window": 4},
    "window 3": {"window": 3},
}


def stop_epoch(rule: StabilityRule, losses: list[float], scores: list[float], chance: float | None, perfect: float) -> int | None:
    for epochs in range(1, len(losses) + 1):
        if judge(rule, losses[:epochs], scores[:epochs], chance, perfect) is not None:
            return epochs
    return None


def replay(uri: str, variants: dict[str, StabilityRule], stages_left_out: tuple[str, ...] = ()) -> dict:
    client = client_for(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = {name: {"epochs": 0, "kept_epoch_changed": 0, "score_changed": 0, "largest_score_move": 0.0} for name in variants}
    recorded, trials, mismatches = 0, 0, []
    after_kept, past_a_window = 0, 0  # epochs after each trial's kept epoch; of them, those more than a window after it
    for run in client.search_runs(experiments, "tags.`searcher.role` = 'search'"):
        search = read_search(client, run.info.run_id)
        search = with_curves(client, search, {t.run_id for stage in search.stages for t in stage.trials})
        classes = search.input.get("classes")
        metric = Metric.from_description(json.loads(run.data.tags.get("searcher.metric", "null")))
        chance, perfect = metric.chance(classes) if classes else None, metric.perfect
        for stage in search.stages:
            if stage.stage in stages_left_out:
                continue
            for trial in stage.trials:
                if trial.behavior not in REPLAYED or "train_loss" not in trial.curves or "val_acc" not in trial.curves:
                    continue
                losses, scores = list(trial.curves["train_loss"].values), list(trial.curves["val_acc"].values)
                recorded, trials = recorded + len(losses), trials + 1
                trained_under = trial_rule(trial)
                if stop_epoch(trained_under, losses, scores, chance, perfect) not in (len(losses), None):
                    mismatches.append(f"{search.name} {trial.name}")
                kept, score = max(range(len(scores)), key=scores.__getitem__), trial_score(scores)
                after = len(scores) - 1 - kept
                after_kept, past_a_window = after_kept + after, past_a_window + max(0, after - trained_under.window)
                for name, rule in variants.items():
                    epochs = min(stop_epoch(rule, losses, scores, chance, perfect) or len(losses), len(losses))
                    counts = found[name]
                    counts["epochs"] += epochs
                    counts["kept_epoch_changed"] += max(range(epochs), key=scores.__getitem__) != kept
                    move = abs(trial_score(scores[:epochs]) - score)
                    counts["score_changed"] += move > 1e-12
                    counts["largest_score_move"] = max(counts["largest_score_move"], move)
    return {"uri": uri, "trials": trials, "recorded_epochs": recorded, "after_kept_epochs": after_kept,
            "past_a_window_epochs": past_a_window, "replay_mismatches": mismatches, "variants": found}


def rule_with(settings: dict[str, str]) -> StabilityRule:
    """The default rule with `settings` (field name -> value as text: a recorded param, or --variant's)."""
    default = StabilityRule()
    return dataclasses.replace(default, **{name: type(getattr(default, name))(value) for name, value in settings.items()})


def trial_rule(trial) -> StabilityRule:
    """The rule the trial was trained under (its recorded `train.stability.*` params), so the replay checks itself."""
    prefix, fields = "train.stability.", {f.name for f in dataclasses.fields(StabilityRule)}
    return rule_with({key.removeprefix(prefix): value for key, value in trial.params.items()
                      if key.startswith(prefix) and key.removeprefix(prefix) in fields})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", help="tracking URIs of finished searches (sqlite:///mlflow.db)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:FIELD=VALUE,... (a StabilityRule field)")
    parser.add_argument("--out", help="also write the figures as JSON")
    parser.add_argument("--search-only", action="store_true",
                        help="leave out the final (and transfer) stage's trials: the compute scripts/bench_search.py counts")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    for given in args.variant:
        name, _, settings = given.partition(":")
        variants[name] = dict(pair.split("=") for pair in settings.split(","))
    rules = {name: rule_with({key: str(value) for key, value in changes.items()}) for name, changes in variants.items()}
    results = [replay(uri, rules, ("final", "transfer") if args.search_only else ()) for uri in args.stores]
    for result in results:
        print(f"{result['uri']}: {result['trials']} trials, {result['recorded_epochs']} epochs recorded"
              + (f"; REPLAY MISMATCH (the replay is wrong) for {result['replay_mismatches']}" if result["replay_mismatches"] else ""))
        recorded = max(result["recorded_epochs"], 1)
        print(f"  after each trial's kept epoch: {result['after_kept_epochs']} epochs ({result['after_kept_epochs'] / recorded:.0%}); more than a "
              f"window after it: {result['past_a_window_epochs']} ({result['past_a_window_epochs'] / recorded:.0%}), the most a rule that keeps "
              "every kept epoch and waits a window past it could save")
        for name, counts in result["variants"].items():
            share = counts["epochs"] / recorded
            print(f"  {name:42s} {counts['epochs']:6d} epochs ({share:4.0%})  kept epoch changed in {counts['kept_epoch_changed']:3d}, "
                  f"score moved in {counts['score_changed']:3d} (largest {counts['largest_score_move']:.4f})")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    sys.exit(1 if any(result["replay_mismatches"] for result in results) else 0)


if __name__ == "__main__":
    main()
