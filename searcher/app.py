"""Wires one search together: validated config -> data, plan, store -> controller -> record -> summary.

Exit codes (DESIGN.md §3): 0 done, 2 bad configuration or input (nothing
trained, no run left RUNNING), 130/143 interrupted (open runs marked KILLED).
"""

from __future__ import annotations

import datetime
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console

from searcher.config import ConfigError, SearcherConfig, data_dir
from searcher.data import DatasetError, DatasetOptions, DeviceData, ImageDataset, load_dataset
from searcher.model.spec import LayoutPolicy
from searcher.search.plan import RegularizerRange, SearchPlan
from searcher.train.stability import StabilityRule
from searcher.train.trainer import TrainSettings, resolve_device

EXIT_OK, EXIT_BAD_INPUT, EXIT_SIGINT, EXIT_SIGTERM = 0, 2, 130, 143


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM so every open run is closed on the way out."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    search_name: str | None = None
    search_run_id: str | None = None
    test_acc: float | None = None


def make_plan(config: SearcherConfig, dataset: ImageDataset) -> SearchPlan:
    s, t, m = config.search, config.train, config.model
    train = TrainSettings(
        optimizer=t.optimizer,  # type: ignore[arg-type]
        lr=t.lr,
        momentum=t.momentum,
        batch_size=t.batch_size,
        plateau_factor=t.plateau_factor,
        plateau_patience=t.plateau_patience,
        stability=StabilityRule(**vars(t.stability)),
        compile=t.compile,
        warm_lr_factor=t.warm_lr_factor,
    )
    layout = LayoutPolicy(
        input_size=dataset.size,
        kernel_policy=m.kernel_policy,  # type: ignore[arg-type]
        large_kernel=m.large_kernel,
        large_layers=m.large_layers,
        min_resolution=m.min_resolution,
    )
    return SearchPlan(
        seed=config.seed,
        data_identity=dataset.identity,
        layout=layout,
        train=train,
        block=m.block,  # type: ignore[arg-type]
        repeats=s.repeats,
        baseline_depth=s.baseline.depth,
        baseline_width=s.baseline.width,
        width_factor=s.width.factor,
        width_cap=s.width.cap,
        width_tolerance=s.width.tolerance,
        width_patience=s.width.patience,
        depth_cap=s.depth.cap,
        depth_min_improvement=s.depth.min_improvement,
        new_layer_factors=tuple(s.depth.new_layer_factors),
        regularization_trials=s.regularization.trials,
        regularizers=tuple(RegularizerRange(name, r.low, r.high, r.log) for name, r in s.regularization.space.items()),
        pruner_warmup_epochs=s.regularization.pruner_warmup_epochs,
        final_seeds=s.final.seeds,
        warm_start=s.warm_start,
    )


def optuna_storage(config: SearcherConfig) -> str:
    if config.tracking.optuna_storage:
        return config.tracking.optuna_storage
    uri = config.tracking.uri
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).with_name("optuna.db")).join(("sqlite:///", ""))
    if uri.startswith("postgresql"):
        return uri
    return "sqlite:///optuna.db"


def ui_command(uri: str) -> str:
    return f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri {uri} --workers 1 --port 5000"


def install_signal_handlers() -> None:
    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C exits at once
        raise Interrupted(EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run(config: SearcherConfig, dataset_chosen: bool, output_dir: Path | None = None, console: Console | None = None) -> Outcome:
    console = console or Console()
    if not dataset_chosen:
        console.print("No dataset chosen: searching on the built-in [bold]digits[/bold] (scikit-learn, offline). Pick one with +dataset=NAME.")
    try:
        dataset = load_dataset(
            DatasetOptions(
                name=config.dataset.name,
                classes=tuple(config.dataset.classes) if config.dataset.classes else None,
                val_fraction=config.dataset.val_fraction,
                split_seed=config.dataset.split_seed,
                data_dir=data_dir(config),
            )
        )
        from searcher.tracking import TrackingError, open_recorder

        try:
            recorder = open_recorder(config.tracking.uri, config.tracking.experiment)
        except TrackingError as error:
            raise ConfigError(str(error)) from None
    except (ConfigError, DatasetError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return Outcome(EXIT_BAD_INPUT)

    import optuna

    from searcher.execution import LocalRunner
    from searcher.report.decisions import decisions_json, decisions_markdown
    from searcher.report.terminal import RichProgress, print_summary
    from searcher.search import StudyBook, run_search
    from searcher.tracking.recorder import flatten

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = config.search.name or f"{dataset.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    plan = make_plan(config, dataset)
    device = resolve_device(config.device)
    console.print(
        f"search [bold]{name}[/bold] on {dataset.name} ({len(dataset.train)} train / {len(dataset.val)} val images, "
        f"{dataset.num_classes} classes, {dataset.channels}x{dataset.size}x{dataset.size}) · preset {config.search.preset} · "
        f"device {device} · tracking {config.tracking.uri}"
    )
    resolved = OmegaConf.to_yaml(OmegaConf.structured(config))
    recorder.start_search(
        name,
        params={k: v for k, v in flatten("", OmegaConf.to_container(OmegaConf.structured(config))).items() if k != "search.name"},
        tags={"searcher.dataset": dataset.name, "searcher.preset": config.search.preset, "searcher.device": str(device)},
    )
    install_signal_handlers()
    try:
        recorder.log_artifact_text(resolved, "config.yaml")
        with RichProgress(console) as progress:
            runner = LocalRunner(DeviceData(dataset, device), recorder, progress)
            result = run_search(plan, StudyBook(optuna_storage(config), name, plan), runner)
        files = {"decisions.json": decisions_json(result), "decisions.md": decisions_markdown(result, name)}
        for file_name, text in files.items():
            recorder.log_artifact_text(text, file_name)
            if output_dir is not None:
                (output_dir / file_name).write_text(text)
        model, example = final_model(result, dataset)
        recorder.finish_search(
            dict(result.final.metrics) | {"search_seconds": result.seconds, "trials": len(result.outcomes)},
            {"searcher.final_arch": result.final.winner.arch.describe()},
            model,
            example,
        )
    except Interrupted as interrupt:
        recorder.abort("KILLED")
        console.print(f"[yellow]interrupted[/yellow]: open runs marked KILLED; exit {interrupt.exit_code}")
        return Outcome(interrupt.exit_code, name, recorder.search_run_id)
    except BaseException:
        recorder.abort("FAILED")
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print_summary(console, result, ui_command(config.tracking.uri), recorder.runs_url("http://127.0.0.1:5000"))
    return Outcome(EXIT_OK, name, recorder.search_run_id, result.final.metrics["test_acc"])


def final_model(result: Any, dataset: ImageDataset) -> tuple[Any, Any]:
    """The final stage's best-validation model in eval mode, with a real input example (uint8 -> normalised)."""
    import torch

    from searcher.model import build_model

    (best,) = result.final.winner_outcomes
    model = build_model(best.request.arch, dataset.channels, dataset.num_classes)
    model.load_state_dict(best.result.state)
    model.eval()
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    example = ((dataset.val.images[:2].float() / 255 - mean) / std).numpy()
    return model, example


def exit_with(outcome: Outcome) -> None:
    sys.exit(outcome.exit_code)
