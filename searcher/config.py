"""Structured-config schemas and validation: a bad setting fails before anything trains.

The YAML under conf/ is where defaults live; these dataclasses hold their types and mirror
the YAML's defaults (tests/test_defaults.py fails when the two differ, and when what the
search builds from them does not hold them). `validate` merges a composed config into the
schema (wrong types and unknown keys fail there) and then checks ranges, section by section
(`check_dataset`, `check_search`, ...), raising ConfigError with one sentence that names
the setting and what it accepts.

Longer than the ~300 lines a module is held to: each section's schema and its range checks
are read together when a setting is added, and both are a line per setting.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

BUILTIN_DATASET = "digits"
AUTO = "auto"  # train.lr, train.batch_size, execution.kind: chosen from the device when the search starts
REGULARIZERS = ("weight_decay", "dropout", "label_smoothing", "augment")


class ConfigError(Exception):
    """A setting is wrong; the message names it and the allowed values (exit code 2)."""


SECONDS, EPOCHS = "seconds", "epochs"  # the units of search.budget
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:(?P<h>{_NUMBER})\s*h\s*)?(?:(?P<m>{_NUMBER})\s*m(?:in)?\s*)?(?:(?P<s>{_NUMBER})\s*s)?")
_EPOCHS = re.compile(rf"(?P<n>{_NUMBER})\s*epochs?")


@dataclass(frozen=True)
class Budget:
    amount: float  # in `unit`
    unit: str  # seconds (wall time, the whole command) | epochs (summed over every trial, one pass over its training split each)

    @staticmethod
    def parse(text: object) -> Budget | None:
        """`45m`, `2h`, `1h30m`, `90s` or `300 epochs`; None for no budget (what the search does with it: search/budget.py)."""
        if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none", "null")):
            return None
        compact = str(text).strip().lower()
        if (match := _EPOCHS.fullmatch(compact)) and float(match["n"]) > 0:
            return Budget(float(match["n"]), EPOCHS)
        match = _DURATION.fullmatch(compact)
        if match and any(match.groups()):
            seconds = sum(float(match[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
            if seconds > 0:
                return Budget(seconds, SECONDS)
        raise ConfigError(f"search.budget={text!r} is not a budget: give a wall time (45m, 2h, 1h30m, 90s) or a compute budget (300 epochs).")

    def describe(self) -> str:
        return duration(self.amount) if self.unit == SECONDS else f"{self.amount:g} epochs"

    def show(self, value: float) -> str:
        """An amount spent, in the budget's unit."""
        return f"{value:.1f} s" if self.unit == SECONDS else f"{value:g} epochs"


def duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


@dataclass
class DatasetConfig:
    name: str = BUILTIN_DATASET
    classes: Optional[list[int]] = None  # restrict to these classes, relabelled 0..k-1
    val_fraction: float = 0.2  # of the training split, stratified
    split_seed: int = 0  # fixes the validation split (and the test split where none is published)
    mean: Optional[list[float]] = None  # published per-channel mean, 0..1 scale; None: computed from the training split
    std: Optional[list[float]] = None  # published per-channel std, 0..1 scale
    mirror: Optional[str] = None  # downloads: base URL replacing the official hosts (SEARCHER_DATASET_MIRROR)
    extra: bool = False  # svhn: add the 531k extra images to the training split
    path: Optional[str] = None  # imagefolder: folder with one sub-folder of PNG/JPEG images per class; table: a CSV or Parquet file
    target: Optional[str] = None  # table: the column to predict (a class, or a value for regression)
    task: str = "auto"  # table: auto (a float target with fractions is regression, any other classes) | classification | regression
    sequence_length: Optional[int] = None  # sequences: tokens per sequence
    vocabulary: Optional[int] = None  # sequences: distinct tokens (the marker and the classes); grammar: symbols per level
    levels: Optional[int] = None  # grammar: levels of expansion (a sentence is branching^levels tokens)
    branching: Optional[int] = None  # grammar: symbols each symbol expands into
    rules: Optional[int] = None  # grammar: ways each symbol can expand (more: harder)
    image_size: Optional[int] = None  # imagefolder, synthetic: square side in pixels
    channels: Optional[int] = None  # imagefolder: 1 (grey) or 3 (RGB); synthetic: any
    flip: Optional[bool] = None  # imagefolder, arrays: do mirror images keep their class?
    num_classes: Optional[int] = None  # synthetic
    train_size: Optional[int] = None  # synthetic: training images (validation is carved from them)
    test_size: Optional[int] = None  # synthetic
    data_seed: int = 0  # synthetic: fixes the generated images
    difficulty: float = 0.0  # synthetic: 0 the original pairs; (0, 1] relational classes with distractors (1: calibrated hard)


@dataclass
class BaselineConfig:
    depth: int = 2
    width: int = 16


@dataclass
class WidthConfig:
    factor: float = 2.0  # geometric candidates: baseline width x factor^k
    cap: int = 128
    tolerance: float = 0.005  # effect-size floor: a wider network is better only if significantly and by more than this
    patience: int = 2  # stop widening after this many candidates without improvement
    ties: str = "grow"  # a comparison that is not significant: grow (the wider, unless it scores lower) | keep_smaller


@dataclass
class DepthConfig:
    cap: int = 6  # deepest network tried
    min_improvement: float = 0.002  # effect-size floor: a new layer is better only if significantly and by more than this
    new_layer_factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # x previous layer's width
    ties: str = "grow"  # a comparison that is not significant: grow (the deeper, unless it scores lower) | keep_smaller
    select: str = "shallowest"  # once growth stops: the shallowest network grown from ties that the deepest is not better than | deepest


@dataclass
class RangeConfig:
    low: float = 0.0  # the "off" value: the enqueued first trial uses it
    high: float = MISSING
    log: bool = False


@dataclass
class RegularizationConfig:
    trials: int = 8  # Optuna trials after the unregularized one
    min_improvement: float = 0.002  # the best regularized network must beat the unregularized one by more than this
    trials_in_flight: int = 2  # asked together before any is told (TPE's constant liar); the same in serial and parallel runs
    pruner_warmup_epochs: int = 8  # the median pruner judges a trial only after this many epochs
    space: dict[str, RangeConfig] = field(
        default_factory=lambda: {
            "weight_decay": RangeConfig(0.0, 0.005),
            "dropout": RangeConfig(0.0, 0.5),
            "label_smoothing": RangeConfig(0.0, 0.2),
            "augment": RangeConfig(0.0, 1.0),
        }
    )


@dataclass
class FinalConfig:
    seeds: int = 3  # retrainings of the winner; validation and test reported as mean ± std


@dataclass
class TransferConfig:
    enabled: bool = False  # stage 5: probe the best candidates on search.transfer.dataset
    dataset: Optional[DatasetConfig] = None  # the target, e.g. {name: digits, classes: [5,6,7,8,9]}
    top_k: int = 3  # distinct candidates with the best validation accuracy
    longest: int = 1  # plus this many others whose kept weights trained the most epochs


@dataclass
class SearchConfig:
    preset: str = "default"
    name: Optional[str] = None  # names the search in MLflow; null: <dataset>-<preset>-seed<N>-<hash of the settings but where it runs and records>
    repeats: int = 1  # seeds every candidate starts with (score = mean)
    max_repeats: int = 3  # an inconclusive comparison trains more seeds of both candidates, up to this many
    significance: float = 0.05  # a paired comparison's p-value below this counts as a real difference
    folds: str = "auto"  # seed r of a candidate trains without fold r and is judged on it; auto: 1/val_fraction folds on a split under 1000 images (not with warm starts), else 1
    max_consecutive_failures: int = 5  # stop the search after this many failed trials in a row (0: never)
    warm_start: bool = False  # width and depth trials start from their parent's weights, grown (Net2Net)
    metric: str = "auto"  # what the stages optimise: auto (accuracy; rmse for regression) | accuracy | rmse | mae | my_package.module.function
    goal: str = "auto"  # maximize | minimize: required for a function of yours; auto for the built-in metrics
    budget: Optional[str] = None  # 45m | 2h | 90s (wall time) | 300 epochs; null: none (searcher/search/budget.py)
    rungs: list[int] = field(default_factory=list)  # epochs where a width or depth candidate behind the network it grows from beyond noise stops ([]: none)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    width: WidthConfig = field(default_factory=WidthConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)


@dataclass
class StabilityConfig:
    window: int = 5  # epochs over which "stopped moving" / "stayed down" is judged
    min_epochs: int = 8
    max_epochs: int = 60
    loss_tolerance: float = 0.1  # relative change of training loss over the window
    loss_floor: float = 0.05
    metric_tolerance: float = 0.005  # a new best val_acc must beat the old by more than this
    overfit_margin: float = 0.02  # val_acc this far below its best for a whole window: overfitting
    explode_factor: float = 10.0


@dataclass
class TrainConfig:
    optimizer: str = "sgd"  # sgd (Nesterov) | adamw
    lr: Any = AUTO  # a number > 0, or auto: 0.05 x batch_size / 64 (searcher/train/auto.py)
    momentum: float = 0.9
    batch_size: Any = AUTO  # an integer >= 1, or auto: 64 on a CPU, up to 256 on CUDA (searcher/train/auto.py)
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    compile: bool = False
    cuda_graphs: bool = True  # on CUDA: each step replayed from a CUDA graph (searcher/train/steps.py)
    checkpoint_seconds: float = 60.0  # within-trial checkpoint at most this often (0: never)
    warm_lr_factor: float = 1.0  # warm-started trials start at lr x this, with a fresh optimizer
    warm_up_epochs: float = 1.0  # warm-started trials ramp the rate up linearly over this many epochs (0: no ramp)
    min_epoch_steps: int = 8  # an epoch of a small training split is several passes over it, at least this many steps
    stability: StabilityConfig = field(default_factory=StabilityConfig)


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "searcher"
    optuna_storage: Optional[str] = None  # null: optuna.db beside a SQLite tracking store (required with a postgresql:// one)
    checkpoint_dir: Optional[str] = None  # within-trial checkpoints; default: checkpoints/ beside a SQLite store
    lease_seconds: float = 60.0  # a search's owner is taken for dead after this long without a heartbeat (tracking/lease.py)


@dataclass
class ReportConfig:
    enabled: bool = True  # figures and report.html/report.md at the end of the search
    trial_plots: Optional[bool] = None  # a learning-curve figure per trial; None: only when the search took >= 3 s a trial


@dataclass
class ExecutionConfig:
    """Where trials run (conf/execution/): never changes a decision, only how many run at once."""

    kind: str = "auto"  # auto (trials in threads on a multi-core CPU, processes sharing each GPU on CUDA) | serial | processes | threads | submitit
    workers: Optional[int] = None  # trials at once; null: GPUs x trials_per_gpu on CUDA, else CPU cores / threads_per_trial (processes, threads), 4 (submitit)
    trials_per_gpu: int = 1  # processes or threads on CUDA: trials share GPUs round-robin, this many per GPU by default
    max_trials_per_gpu: int = 4  # auto on CUDA: trials per GPU as fit in memory, at most this many
    max_trials_on_cpu: int = 4  # auto on a CPU: trials at once in threads, one per core, at most this many
    speculate: Any = AUTO  # true | false | auto: idle slots train the stage's likeliest next trials (execution/runner.py)
    threads_per_trial: Optional[int] = None  # torch threads a trial trains with; null: 1 on the CPU, cores / workers on CUDA
    cluster: Optional[str] = None  # submitit: slurm | local; null: slurm where sbatch exists, else local
    folder: Optional[str] = None  # submitit: job scripts and logs; null: submitit/<search name>/ beside a SQLite tracking store
    timeout_min: int = 240  # submitit: time limit of one trial's job
    partition: Optional[str] = None  # submitit on SLURM
    gpus_per_node: int = 1  # submitit on SLURM (0 on a CPU partition)
    cpus_per_task: int = 8
    mem_gb: int = 32
    slurm_additional: dict[str, str] = field(default_factory=dict)  # extra sbatch options, e.g. {account: myproj}


@dataclass
class SearcherConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data_dir: str = "~/.cache/searcher"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict[str, Any] = field(default_factory=dict)  # the family: _target_ (a searcher.Family class) and its settings; {}: the cnn
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def validate(composed: DictConfig | dict) -> SearcherConfig:
    """Typed, range-checked config, or ConfigError naming the setting."""
    schema = OmegaConf.structured(SearcherConfig)
    user = OmegaConf.create(composed) if isinstance(composed, dict) else composed
    user = OmegaConf.masked_copy(user, [k for k in user.keys() if k != "hydra"]) if "hydra" in user else user
    try:
        merged = OmegaConf.merge(schema, user)
        OmegaConf.resolve(merged)
        config: SearcherConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except ConfigKeyError as error:
        key = error.full_key or error.key
        raise ConfigError(f"{key} is not a setting of searcher; check the spelling (python -m searcher --cfg job lists them).") from None
    except ValidationError as error:
        setting = re.sub(r"\[\d+\]$", "", str(error.full_key))  # a list's element: name the list
        shown = f"{setting}={error.value!r}" if setting == error.full_key else f"{setting} holds {error.value!r}, which"
        raise ConfigError(f"{shown} is not valid: expected {_expected(error)}.") from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"{getattr(error, 'full_key', '') or 'config'}: {error.msg}") from None
    composed_space = OmegaConf.select(user, "search.regularization.space")
    if composed_space is not None:  # the composed space is the whole space: one deleted (~search...space.augment) stays out
        space = config.search.regularization.space
        config.search.regularization.space = {name: span for name, span in space.items() if name in composed_space}
    config.train.lr = _number_or_auto(config.train.lr, "train.lr", float)
    config.train.batch_size = _number_or_auto(config.train.batch_size, "train.batch_size", int)
    if config.execution.speculate not in (True, False, AUTO):
        raise ConfigError(f"execution.speculate={config.execution.speculate!r} is not valid: expected true, false or auto.")
    check_ranges(config)
    Budget.parse(config.search.budget)  # (a ConfigError naming the forms it takes)
    return config


def _number_or_auto(value: Any, setting: str, kind: type) -> Any:
    """`auto`, or the number as `kind` (so lr=1 is recorded and keyed as 1.0, as a float setting always was).

    These settings are typed Any in the schema (OmegaConf has no int-or-string type), so their type is checked
    here, with the message a wrong type gets everywhere else."""
    accepted = (int,) if kind is int else (int, float)
    if value == AUTO:
        return value
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ConfigError(f"{setting}={value!r} is not valid: expected {'an integer' if kind is int else 'a number'} or auto.")
    return kind(value)


def _expected(error: ValidationError) -> str:
    """What the setting accepts, read from its type in the schema (the error itself names only the enclosing class)."""
    path = [part for part in re.split(r"[.\[\]]", str(error.full_key)) if part and not part.isdigit()]
    kind: Any = SearcherConfig
    for part in path:
        kind = _unwrap(kind)
        if dataclasses.is_dataclass(kind):
            kind = typing.get_type_hints(kind).get(part, Any)
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
    return _describe(kind)


def _unwrap(kind: Any) -> Any:
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind


def _describe(kind: Any) -> str:
    inner = _unwrap(kind)
    if inner is not kind:
        return f"{_describe(inner)}, or null"
    if typing.get_origin(kind) is list:
        item = _describe(typing.get_args(kind)[0])
        return {"an integer": "a list of integers, e.g. [0,1,2]", "a number": "a list of numbers, e.g. [0.5,1.0]"}.get(item, "a list")
    if typing.get_origin(kind) is dict:
        return "a mapping, e.g. {key: value}"
    if dataclasses.is_dataclass(kind):
        return "a group of settings, set one by one (e.g. train.lr=0.1)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, "a value of another type")


def _require(ok: bool, setting: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{setting}={value!r} is out of range; allowed: {allowed}.")


MAX_SEED = 2**31 - 1  # torch and numpy take seeds below 2^32; the search adds offsets (repeats, final seeds + 1000)
MAX_WIDTH = 4096  # channels in one layer: wider would allocate gigabytes per layer before any trial could fail usefully


def _finite_everywhere(node: Any, key: str = "") -> None:
    """Every number in the config is finite: inf and nan pass every `>=` check below, then break training or Optuna."""
    children: Any
    if dataclasses.is_dataclass(node):
        children = ((field.name, getattr(node, field.name)) for field in dataclasses.fields(node))
    elif isinstance(node, dict):
        children = node.items()
    elif isinstance(node, list):
        children = ((None, value) for value in node)  # an element is named by its list
    else:
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{key}={node!r} is out of range; allowed: a finite number.")
        return
    for name, value in children:
        _finite_everywhere(value, key if name is None else f"{key}.{name}" if key else str(name))


def check_ranges(c: SearcherConfig) -> None:
    """Every value in its range, section by section, in this order (the first one out of range is the one reported)."""
    _finite_everywhere(c)
    _require(0 <= c.seed <= MAX_SEED, "seed", c.seed, f"an integer in [0, {MAX_SEED}]")
    _require(c.device in ("auto", "cpu", "cuda") or (c.device.startswith("cuda:") and c.device[5:].isdigit()), "device", c.device, "auto, cpu, cuda or cuda:N")
    check_dataset(c.dataset)
    check_search(c.search)
    check_train(c.train)
    check_tracking(c.tracking)
    check_execution(c.execution)


def check_dataset(d: DatasetConfig) -> None:
    _require(0 < d.val_fraction < 1, "dataset.val_fraction", d.val_fraction, "a fraction between 0 and 1")
    if d.classes is not None:
        # (two or more is checked with the data: a single class that does not exist is named as missing first)
        _require(len(d.classes) >= 1 and len(set(d.classes)) == len(d.classes), "dataset.classes", d.classes, "two or more distinct class indices")
        _require(min(d.classes) >= 0, "dataset.classes", d.classes, "class indices >= 0")
    for key in ("mean", "std"):
        values = getattr(d, key)
        if values is not None:
            _require(len(values) >= 1 and all(0 <= v <= 1 for v in values), f"dataset.{key}", values, "a list of per-channel values between 0 and 1")
    if d.std is not None:
        _require(min(d.std) > 0, "dataset.std", d.std, "values > 0")
    if d.image_size is not None:
        _require(4 <= d.image_size <= 1024, "dataset.image_size", d.image_size, "an integer from 4 to 1024")
    if d.channels is not None:
        _require(d.channels >= 1 and (d.name != "imagefolder" or d.channels in (1, 3)), "dataset.channels", d.channels, "1 or 3 for imagefolder, >= 1 for synthetic")
    if d.num_classes is not None:
        _require(d.num_classes >= 2, "dataset.num_classes", d.num_classes, "an integer >= 2")
    if d.train_size is not None:
        least = 2 * (d.num_classes or 2)
        _require(d.train_size >= least, "dataset.train_size", d.train_size, f"at least 2 images per class ({least})")
    if d.test_size is not None:
        _require(d.test_size >= 1, "dataset.test_size", d.test_size, "an integer >= 1")
    _require(0 <= d.data_seed <= MAX_SEED, "dataset.data_seed", d.data_seed, f"an integer in [0, {MAX_SEED}]")
    _require(0 <= d.split_seed <= MAX_SEED, "dataset.split_seed", d.split_seed, f"an integer in [0, {MAX_SEED}]")
    _require(0 <= d.difficulty <= 1, "dataset.difficulty", d.difficulty, "a number from 0 to 1")
    _require(d.difficulty == 0 or d.name in ("synthetic", "synthetic_hard"), "dataset.difficulty", d.difficulty, "0 except for synthetic")
    _require(d.flip is None or d.name in ("imagefolder", "arrays"), "dataset.flip", d.flip, "null except for imagefolder and arrays (published datasets fix it)")
    _require(not d.extra or d.name == "svhn", "dataset.extra", d.extra, "false except for svhn")
    _require(d.target is None or d.name == "table", "dataset.target", d.target, "null except for table (the column to predict)")
    _require(d.task in ("auto", "classification", "regression"), "dataset.task", d.task, "auto, classification or regression")
    _require(d.task == "auto" or d.name == "table", "dataset.task", d.task, "auto except for table (the other datasets are classification)")
    if d.sequence_length is not None:
        _require(2 <= d.sequence_length <= 4096, "dataset.sequence_length", d.sequence_length, "an integer from 2 to 4096")
    if d.vocabulary is not None:
        _require(3 <= d.vocabulary <= 1024, "dataset.vocabulary", d.vocabulary, "an integer from 3 to 1024 (a marker and two or more classes)")
    for key in ("levels", "branching", "rules"):
        _require(getattr(d, key) is None or d.name == "grammar", f"dataset.{key}", getattr(d, key), "null except for grammar")
    if d.name == "grammar":
        levels, branching, rules, vocabulary = d.levels or 3, d.branching or 2, d.rules or 4, d.vocabulary or 8
        _require(branching >= 2, "dataset.branching", branching, "an integer >= 2")
        _require(1 <= levels and branching**levels <= 4096, "dataset.levels", levels, f"an integer >= 1 with {branching}^levels <= 4096 tokens")
        _require(1 <= rules <= vocabulary ** (branching - 1), "dataset.rules", rules, f"an integer from 1 to vocabulary^(branching-1) = {vocabulary ** (branching - 1)}, so no two symbols share an expansion")


def check_search(s: SearchConfig) -> None:
    _require(s.preset in ("default", "quick"), "search.preset", s.preset, "default or quick (set it with search=quick)")
    _require(1 <= s.repeats <= 100, "search.repeats", s.repeats, "an integer in [1, 100]")
    _require(s.repeats <= s.max_repeats <= 100, "search.max_repeats", s.max_repeats, f"an integer in [search.repeats ({s.repeats}), 100]")
    _require(0 < s.significance < 1, "search.significance", s.significance, "a probability in (0, 1), e.g. 0.05")
    _require(s.goal in ("auto", "maximize", "minimize"), "search.goal", s.goal, "auto, maximize or minimize")
    _require(s.metric in ("auto", "accuracy", "rmse", "mae") or "." in s.metric, "search.metric", s.metric, "auto, accuracy, rmse, mae or my_package.module.function")
    _require(s.width.ties in ("keep_smaller", "grow"), "search.width.ties", s.width.ties, "keep_smaller or grow")
    _require(s.depth.ties in ("keep_smaller", "grow"), "search.depth.ties", s.depth.ties, "keep_smaller or grow")
    _require(s.depth.select in ("shallowest", "deepest"), "search.depth.select", s.depth.select, "shallowest or deepest")
    _require(s.folds == "auto" or (s.folds.isdigit() and 1 <= int(s.folds) <= 100), "search.folds", s.folds, "auto or an integer in [1, 100]")
    if s.warm_start and s.folds not in ("auto", "1"):
        raise ConfigError(
            f"search.folds={s.folds} cannot be combined with search.warm_start=true: a child's extra seeds would grow from "
            "weights trained on their own validation images; set search.folds=1 (or auto) or search.warm_start=false."
        )
    rungs = list(s.rungs)
    _require(
        all(isinstance(epoch, int) and epoch >= 1 for epoch in rungs) and rungs == sorted(set(rungs)),
        "search.rungs", rungs, "a list of increasing epochs >= 1, e.g. [3, 6] (or [] for none)",
    )
    _require(s.max_consecutive_failures >= 0, "search.max_consecutive_failures", s.max_consecutive_failures, "an integer >= 0")
    _require(s.baseline.depth >= 1, "search.baseline.depth", s.baseline.depth, "an integer >= 1")
    _require(1 <= s.baseline.width <= MAX_WIDTH, "search.baseline.width", s.baseline.width, f"an integer in [1, {MAX_WIDTH}]")
    _require(1 < s.width.factor <= 16, "search.width.factor", s.width.factor, "a number in (1, 16]")
    _require(s.baseline.width <= s.width.cap <= MAX_WIDTH, "search.width.cap", s.width.cap, f"from search.baseline.width ({s.baseline.width}) to {MAX_WIDTH}")
    _require(s.width.tolerance >= 0, "search.width.tolerance", s.width.tolerance, "a number >= 0")
    _require(s.width.patience >= 1, "search.width.patience", s.width.patience, "an integer >= 1")
    _require(s.baseline.depth <= s.depth.cap <= 64, "search.depth.cap", s.depth.cap, f"from search.baseline.depth ({s.baseline.depth}) to 64")
    _require(s.depth.min_improvement >= 0, "search.depth.min_improvement", s.depth.min_improvement, "a number >= 0")
    factors = s.depth.new_layer_factors
    _require(bool(factors) and all(f > 0 for f in factors), "search.depth.new_layer_factors", factors, "a non-empty list of numbers > 0")
    check_regularization(s.regularization)
    _require(1 <= s.final.seeds <= 100, "search.final.seeds", s.final.seeds, "an integer in [1, 100]")
    check_transfer(s.transfer)


def check_regularization(r: RegularizationConfig) -> None:
    _require(r.trials >= 0, "search.regularization.trials", r.trials, "an integer >= 0")
    _require(r.trials_in_flight >= 1, "search.regularization.trials_in_flight", r.trials_in_flight, "an integer >= 1")
    _require(0 <= r.min_improvement < 1, "search.regularization.min_improvement", r.min_improvement, "a number in [0, 1)")
    _require(r.pruner_warmup_epochs >= 0, "search.regularization.pruner_warmup_epochs", r.pruner_warmup_epochs, "an integer >= 0")
    upper = {"weight_decay": 10.0, "dropout": 0.95, "label_smoothing": 0.5, "augment": 1.0}
    for name, span in r.space.items():
        key = f"search.regularization.space.{name}"
        _require(name in REGULARIZERS, key, name, ", ".join(REGULARIZERS))
        _require(0 <= span.low <= span.high <= upper[name], key, f"[{span.low}, {span.high}]", f"0 <= low <= high <= {upper[name]}")
        _require(not span.log or span.low > 0, f"{key}.low", span.low, "a number > 0 when log is true")


def check_transfer(x: TransferConfig) -> None:
    if x.enabled and x.dataset is None:
        raise ConfigError(
            "search.transfer.enabled=true needs a target: set search.transfer.dataset, "
            "e.g. 'search.transfer.dataset={name: digits, classes: [5,6,7,8,9]}'."
        )
    _require(x.top_k >= 1, "search.transfer.top_k", x.top_k, "an integer >= 1")
    _require(x.longest >= 0, "search.transfer.longest", x.longest, "an integer >= 0")
    if x.dataset is not None and x.dataset.classes is not None:
        classes = x.dataset.classes
        _require(len(classes) >= 2 and len(set(classes)) == len(classes) and min(classes) >= 0, "search.transfer.dataset.classes", classes, "two or more distinct class indices >= 0")
    if x.dataset is not None:
        _require(0 < x.dataset.val_fraction < 1, "search.transfer.dataset.val_fraction", x.dataset.val_fraction, "a fraction between 0 and 1")


def check_train(t: TrainConfig) -> None:
    _require(t.optimizer in ("adamw", "sgd"), "train.optimizer", t.optimizer, "adamw or sgd")
    _require(t.lr == AUTO or t.lr > 0, "train.lr", t.lr, "auto or a number > 0")
    _require(0 < t.warm_lr_factor <= 1, "train.warm_lr_factor", t.warm_lr_factor, "a number in (0, 1]")
    _require(0 <= t.warm_up_epochs <= 100, "train.warm_up_epochs", t.warm_up_epochs, "a number of epochs in [0, 100]")
    _require(isinstance(t.min_epoch_steps, int) and t.min_epoch_steps >= 1, "train.min_epoch_steps", t.min_epoch_steps, "an integer >= 1")
    _require(t.batch_size == AUTO or 1 <= t.batch_size <= 65536, "train.batch_size", t.batch_size, "auto or an integer in [1, 65536]")
    _require(0 < t.plateau_factor < 1, "train.plateau_factor", t.plateau_factor, "a number between 0 and 1")
    _require(t.checkpoint_seconds >= 0, "train.checkpoint_seconds", t.checkpoint_seconds, "a number >= 0 (0: never)")
    _require(t.plateau_patience >= 0, "train.plateau_patience", t.plateau_patience, "an integer >= 0")
    st = t.stability
    _require(st.window >= 1, "train.stability.window", st.window, "an integer >= 1")
    _require(st.min_epochs >= 1, "train.stability.min_epochs", st.min_epochs, "an integer >= 1")
    _require(st.min_epochs <= st.max_epochs <= 10_000, "train.stability.max_epochs", st.max_epochs, f"from train.stability.min_epochs ({st.min_epochs}) to 10000")
    for name in ("loss_tolerance", "loss_floor", "metric_tolerance", "overfit_margin"):
        _require(getattr(st, name) >= 0, f"train.stability.{name}", getattr(st, name), "a number >= 0")
    _require(st.explode_factor > 1, "train.stability.explode_factor", st.explode_factor, "a number > 1")


def check_tracking(t: TrackingConfig) -> None:
    _require(bool(t.experiment), "tracking.experiment", t.experiment, "a non-empty name")
    _require(1 <= t.lease_seconds <= 86400, "tracking.lease_seconds", t.lease_seconds, "a number of seconds from 1 to 86400")
    storage = t.optuna_storage
    _require(
        storage is None or storage.startswith(("sqlite:///", "postgresql", "mysql", "journal:///")),
        "tracking.optuna_storage",
        storage,
        "null, sqlite:///path.db, postgresql://user@host/db or journal:///path/to/journal.log (NFS without a database server)",
    )


def check_execution(e: ExecutionConfig) -> None:
    _require(
        e.kind in (AUTO, "serial", "processes", "threads", "submitit"), "execution.kind", e.kind, "auto, serial, processes, threads or submitit (set it with execution=NAME)"
    )
    _require(e.workers is None or e.workers >= 1, "execution.workers", e.workers, "null or an integer >= 1")
    _require(e.trials_per_gpu >= 1, "execution.trials_per_gpu", e.trials_per_gpu, "an integer >= 1")
    _require(e.max_trials_per_gpu >= 1, "execution.max_trials_per_gpu", e.max_trials_per_gpu, "an integer >= 1")
    _require(e.max_trials_on_cpu >= 1, "execution.max_trials_on_cpu", e.max_trials_on_cpu, "an integer >= 1")
    _require(e.threads_per_trial is None or e.threads_per_trial >= 1, "execution.threads_per_trial", e.threads_per_trial, "null or an integer >= 1")
    _require(e.cluster in (None, "slurm", "local"), "execution.cluster", e.cluster, "null, slurm or local")
    _require(e.timeout_min >= 1, "execution.timeout_min", e.timeout_min, "an integer >= 1 (minutes)")
    _require(e.gpus_per_node >= 0, "execution.gpus_per_node", e.gpus_per_node, "an integer >= 0")
    _require(e.cpus_per_task >= 1, "execution.cpus_per_task", e.cpus_per_task, "an integer >= 1")
    _require(e.mem_gb >= 1, "execution.mem_gb", e.mem_gb, "an integer >= 1 (GB)")


def data_dir(config: SearcherConfig) -> Path:
    return Path(config.data_dir).expanduser()


def beside_tracking_store(config: SearcherConfig, file_name: str) -> Path:
    """A path next to a SQLite tracking database (or in the working directory for a server store): where the Optuna
    storage, the checkpoints and submitit's folders go by default."""
    uri = config.tracking.uri
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path(".")
    return folder / file_name
