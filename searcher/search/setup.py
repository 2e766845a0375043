"""The search's plan, built from the config's `search`, `train` and `model` sections (and the data it searches).

Every value comes from the config, whose defaults are conf/'s YAML: the plan carries no defaults of its own, and
the trainer's settings and stability rule only the YAML's (tests/test_defaults.py holds them equal).
"""

from __future__ import annotations

from dataclasses import replace

from searcher.config import SearcherConfig
from searcher.data import ImageDataset
from searcher.model.spec import LayoutPolicy
from searcher.search.evidence import cross_validation_folds
from searcher.search.plan import RegularizerRange, SearchPlan, TransferPlan
from searcher.train.auto import TrainingChoice, choose_training
from searcher.train.stability import StabilityRule
from searcher.train.trainer import TrainSettings, resolve_device


def with_auto_training(config: SearcherConfig, train_images: int) -> tuple[SearcherConfig, TrainingChoice]:
    """`train.batch_size` and `train.lr` made concrete for the device (`auto`: searcher/train/auto.py; set values kept),
    so that trial keys, records and the search's name hold the numbers trials train with."""
    choice = choose_training(resolve_device(config.device).type, train_images, config.train.batch_size, config.train.lr)
    return replace(config, train=replace(config.train, batch_size=choice.batch_size, lr=choice.lr)), choice


def train_settings(config: SearcherConfig) -> TrainSettings:
    """How every unregularized trial trains, from `train` (its lr and batch_size already concrete)."""
    t = config.train
    return TrainSettings(
        optimizer=t.optimizer,  # type: ignore[arg-type]
        lr=t.lr,
        momentum=t.momentum,
        batch_size=t.batch_size,
        plateau_factor=t.plateau_factor,
        plateau_patience=t.plateau_patience,
        stability=StabilityRule(**vars(t.stability)),
        compile=t.compile,
        cuda_graphs=t.cuda_graphs,
        warm_lr_factor=t.warm_lr_factor,
        warm_up_epochs=t.warm_up_epochs,
    )


def layout_policy(config: SearcherConfig, dataset: ImageDataset) -> LayoutPolicy:
    """The architecture family the search grows, from `model`, at the dataset's image size."""
    m = config.model
    return LayoutPolicy(
        input_size=dataset.size,
        kernel_policy=m.kernel_policy,  # type: ignore[arg-type]
        large_kernel=m.large_kernel,
        large_layers=m.large_layers,
        min_resolution=m.min_resolution,
    )


def make_plan(config: SearcherConfig, dataset: ImageDataset, target: ImageDataset | None = None) -> SearchPlan:
    """The plan the stages read: `search` for the procedure, `train` and `model` for its trials."""
    config = with_auto_training(config, len(dataset.train))[0]  # (a no-op once run() has made them concrete)
    s = config.search
    return SearchPlan(
        seed=config.seed,
        data_identity=dataset.identity,
        layout=layout_policy(config, dataset),
        train=train_settings(config),
        block=config.model.block,  # type: ignore[arg-type]
        repeats=s.repeats,
        max_repeats=s.max_repeats,
        folds=cross_validation_folds(s.folds, len(dataset.train), len(dataset.val), s.warm_start),
        significance=s.significance,
        width_ties=s.width.ties,
        depth_ties=s.depth.ties,
        depth_select=s.depth.select,
        baseline_depth=s.baseline.depth,
        baseline_width=s.baseline.width,
        width_factor=s.width.factor,
        width_cap=s.width.cap,
        width_tolerance=s.width.tolerance,
        width_patience=s.width.patience,
        depth_cap=s.depth.cap,
        depth_min_improvement=s.depth.min_improvement,
        new_layer_factors=tuple(s.depth.new_layer_factors),
        regularization_min_improvement=s.regularization.min_improvement,
        regularization_trials=s.regularization.trials,
        regularization_in_flight=s.regularization.trials_in_flight,
        regularizers=tuple(RegularizerRange(name, r.low, r.high, r.log) for name, r in s.regularization.space.items()),
        pruner_warmup_epochs=s.regularization.pruner_warmup_epochs,
        final_seeds=s.final.seeds,
        max_consecutive_failures=s.max_consecutive_failures,
        transfer=TransferPlan(target.identity, s.transfer.top_k, s.transfer.longest) if target is not None else None,
        warm_start=s.warm_start,
    )
