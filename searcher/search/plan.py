"""The knobs of the staged procedure, as one frozen value the stages read.

The plan takes values and holds no defaults of its own (but `concurrency`, which no setting names): the search builds it from the config (search/setup.py),
whose defaults are conf/'s YAML, and tests build it with the values they test."""

from __future__ import annotations

from dataclasses import dataclass

from searcher.config import Budget
from searcher.model.family import Family, InputShape
from searcher.train.metrics import ACCURACY, Metric
from searcher.train.trainer import TrainSettings


@dataclass(frozen=True)
class RegularizerRange:
    """One regularizer the Optuna study samples; `low` is "off" for the enqueued first trial."""

    name: str  # weight_decay | dropout | label_smoothing | augment
    low: float
    high: float
    log: bool  # sampled on a log scale (then low > 0)


@dataclass(frozen=True)
class TransferPlan:
    """Stage 5: probe the search's best (and longest-trained) networks on a target dataset."""

    target_identity: str  # the target dataset, as trial keys hash it
    top_k: int  # distinct candidates with the best validation accuracy
    longest: int  # plus this many others whose kept weights trained the most epochs


@dataclass(frozen=True, kw_only=True)
class SearchPlan:
    seed: int
    data_identity: str
    family: Family  # what the stages grow (model/family.py)
    input_shape: InputShape  # one example's shape, as the family's networks take it
    train: TrainSettings  # the unregularized settings every stage before regularization uses
    repeats: int  # seeds every candidate starts with; a candidate's score is the mean over its seeds
    max_repeats: int  # an inconclusive paired comparison adds seeds of both candidates, up to this many
    folds: int  # cross-validated comparisons: seed r trains without fold r of this many and is judged on it (1: the fixed split)
    significance: float  # p-value below which a paired comparison counts as a real difference
    width_ties: str  # a width comparison that is not significant: grow when the wider scores no lower, or keep_smaller
    depth_ties: str  # the same for a new layer
    depth_select: str  # after growth: the shallowest network the deepest is not better than (or: deepest)
    baseline_depth: int
    baseline_width: int
    width_factor: float  # geometric width candidates: baseline * factor^k
    width_cap: int
    width_tolerance: float  # effect-size floor of width comparisons (searcher.search.evidence)
    width_patience: int  # stop widening after this many candidates that do not take the best's place
    depth_cap: int
    depth_min_improvement: float  # effect-size floor of depth comparisons
    new_layer_factors: tuple[float, ...]  # new layer's width candidates x previous layer's
    regularization_min_improvement: float  # a regularized network must beat the unregularized one by more than this
    regularization_trials: int  # Optuna trials after the enqueued unregularized one
    regularization_in_flight: int  # trials asked per batch before any is told (decides what TPE sees)
    regularizers: tuple[RegularizerRange, ...]
    pruner_warmup_epochs: int
    final_seeds: int
    max_consecutive_failures: int  # 0: never stop for failures
    transfer: TransferPlan | None  # None: no stage 5
    unit: str = "image"  # what the decision log calls one validation example: image, row (a table), sequence
    metric: Metric = ACCURACY  # what the stages optimise (search.metric): its score is higher-is-better (train/metrics.py)
    concurrency: int = 1  # trials the runner trains at once (the app sets it from the Runner): only how eagerly a stage asks, never what it decides
    warm_start: bool  # width and depth trials grow from their parent's trained weights (Net2Net)
    rungs: tuple[int, ...] = ()  # search.rungs: epochs where a cold width or depth candidate behind its reference beyond noise stops (train/rungs.py)
    budget: Budget | None = None  # search.budget: growth stops where the next trials and the final retraining would not fit (search/budget.py)
