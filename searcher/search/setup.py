"""The search's plan, built from the config's `search`, `train` and `model` sections (and the data it searches).

Every value comes from the config, whose defaults are conf/'s YAML: the plan carries no defaults of its own, and
the trainer's settings and stability rule only the YAML's (tests/test_defaults.py holds them equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

from searcher.config import Budget, ConfigError, SearcherConfig
from searcher.data import ImageDataset
from searcher.model.cnn import CNN
from searcher.model.family import Family, FamilyError, InputShape, family_class, family_from
from searcher.model.mlp import MLP
from searcher.model.transformer import Transformer
from searcher.search.evidence import cross_validation_folds
from searcher.search.plan import RegularizerRange, SearchPlan, TransferPlan
from searcher.train.auto import TrainingChoice, choose_training, epoch_passes
from searcher.train.metrics import Metric, MetricError, choose_metric
from searcher.train.stability import StabilityRule
from searcher.train.trainer import TrainSettings, resolve_device

BUILT_IN = {family.identity()["_target_"]: family for family in (CNN(), MLP(), Transformer())}  # conf/model/*.yaml, at their defaults


def with_auto_training(config: SearcherConfig, train_images: int) -> tuple[SearcherConfig, TrainingChoice]:
    """`train.batch_size` and `train.lr` made concrete for the device (`auto`: searcher/train/auto.py; set values kept),
    so that trial keys, records and the search's name hold the numbers trials train with."""
    t = config.train
    choice = choose_training(resolve_device(config.device).type, train_images, t.batch_size, t.lr, t.min_epoch_steps)
    return replace(config, train=replace(t, batch_size=choice.batch_size, lr=choice.lr)), choice


def train_settings(config: SearcherConfig, train_images: int) -> TrainSettings:
    """How every unregularized trial trains, from `train` (its lr and batch_size already concrete) and the size of the
    training split (an epoch of a small one is several passes over it)."""
    t = config.train
    return TrainSettings(
        passes=epoch_passes(train_images, t.batch_size, t.min_epoch_steps),
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


def model_family(config: SearcherConfig) -> Family:
    """The family the search grows, from `model` (its `_target_` class and settings; none: the cnn at its defaults).
    Raises ConfigError naming the setting when the class cannot be had or refuses its settings."""
    try:
        return family_from(own_settings(config.model)) if config.model else CNN()
    except FamilyError as error:
        raise ConfigError(str(error)) from None


def own_settings(model: dict) -> dict:
    """`model` without a built-in family's default settings where `_target_` names another family: `model._target_=
    pkg.Family` on the command line replaces the composed group's class (model=cnn, or mlp for a table) but keeps its
    other keys, which are not the new family's. A setting the user changed is kept (and refused if not the family's).
    A built-in default that is also one of the family's own fields cannot be told from the user's value: refused, with
    `model=custom` (conf/model/custom.yaml: nothing but `_target_`) named as the way to say it."""
    target = model.get("_target_")
    if target in BUILT_IN:
        return model
    found = family_class(target)
    own: set[str] = {f.name for f in dataclasses.fields(found)} if dataclasses.is_dataclass(found) else set()
    for family in BUILT_IN.values():
        defaults = family.settings()
        if defaults and defaults.items() <= model.items():  # the settings of that built-in group, untouched: it was composed
            shared = sorted(key for key in defaults if key in own)
            if shared:
                named = ", ".join(f"{key}={defaults[key]}" for key in shared)
                raise FamilyError(
                    f"model._target_={target} replaces the {family.name} model group's class, whose {named} would reach "
                    f"{found.__name__} as its own setting; select your family with model=custom model._target_={target} "
                    f"(then only the settings you give, e.g. +model.{shared[0]}=..., reach it)."
                )
    left_over = {key: value for family in BUILT_IN.values() for key, value in family.settings().items()}
    return {key: value for key, value in model.items() if key == "_target_" or key in own or left_over.get(key, object()) != value}


def check_family(family: Family, config: SearcherConfig, input_shape: InputShape) -> None:
    """What a family cannot do with these data or settings, refused before anything trains."""
    try:
        family.baseline(config.search.baseline.depth, config.search.baseline.width, input_shape)
    except ValueError as error:
        raise ConfigError(f"model ({family.label}): {error}") from None
    if config.search.transfer.enabled and not isinstance(family, CNN):
        raise ConfigError(f"search.transfer.dataset probes conv features; it works with model=cnn only (this search grows {family.label}).")


def make_plan(config: SearcherConfig, dataset: ImageDataset, target: ImageDataset | None = None) -> SearchPlan:
    """The plan the stages read: `search` for the procedure, `train` and `model` for its trials."""
    config = with_auto_training(config, len(dataset.train))[0]  # (a no-op once run() has made them concrete)
    s = config.search
    family = model_family(config)
    check_family(family, config, dataset.input_shape)
    metric = search_metric(config, dataset)
    warm_start = s.warm_start and family.grows  # a family that cannot grow weights trains every candidate from scratch
    regularizers = tuple(RegularizerRange(name, r.low, r.high, r.log) for name, r in s.regularization.space.items())
    if not (family.augments and dataset.augmentable):  # flips and crops belong to images (and to families that take them)
        regularizers = tuple(r for r in regularizers if r.name != "augment")
    if metric.task == "regression":  # label smoothing spreads a class's probability: no classes, nothing to smooth
        regularizers = tuple(r for r in regularizers if r.name != "label_smoothing")
    return SearchPlan(
        seed=config.seed,
        data_identity=dataset.identity,
        family=family,
        input_shape=dataset.input_shape,
        train=train_settings(config, len(dataset.train)),
        repeats=s.repeats,
        max_repeats=s.max_repeats,
        folds=cross_validation_folds(s.folds, len(dataset.train), len(dataset.val), warm_start),
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
        regularizers=regularizers,
        pruner_warmup_epochs=s.regularization.pruner_warmup_epochs,
        final_seeds=s.final.seeds,
        max_consecutive_failures=s.max_consecutive_failures,
        transfer=TransferPlan(target.identity, s.transfer.top_k, s.transfer.longest) if target is not None else None,
        warm_start=warm_start,
        unit={3: "image", 1: "row"}.get(len(dataset.input_shape), "sequence"),
        metric=metric,
        budget=Budget.parse(s.budget),
        rungs=tuple(s.rungs),
    )


def search_metric(config: SearcherConfig, dataset: ImageDataset) -> Metric:
    """`search.metric` for this dataset's task, errors shown in the target's units (its training split's std)."""
    try:
        return choose_metric(config.search.metric, config.search.goal, dataset.task, dataset.target_std)  # type: ignore[arg-type]
    except MetricError as error:
        raise ConfigError(str(error)) from None
