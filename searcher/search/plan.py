"""The knobs of the staged procedure, as one frozen value the stages read."""

from __future__ import annotations

from dataclasses import dataclass

from searcher.model.spec import BlockType, LayoutPolicy
from searcher.train.trainer import TrainSettings


@dataclass(frozen=True)
class RegularizerRange:
    """One regularizer the Optuna study samples; `low` is "off" for the enqueued first trial."""

    name: str  # weight_decay | dropout | label_smoothing | augment
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class TransferPlan:
    """Stage 5: probe the search's best (and longest-trained) networks on a target dataset."""

    target_identity: str  # the target dataset, as trial keys hash it
    top_k: int = 3  # distinct candidates with the best validation accuracy
    longest: int = 1  # plus this many others whose kept weights trained the most epochs


@dataclass(frozen=True)
class SearchPlan:
    seed: int
    data_identity: str
    layout: LayoutPolicy
    train: TrainSettings  # the unregularized settings every stage before regularization uses
    block: BlockType = "plain"
    repeats: int = 1  # seeds every candidate starts with; a candidate's score is the mean over its seeds
    max_repeats: int = 1  # an inconclusive paired comparison adds seeds of both candidates, up to this many
    folds: int = 1  # cross-validated comparisons: seed r trains without fold r of this many and is judged on it (1: the fixed split)
    significance: float = 0.05  # p-value below which a paired comparison counts as a real difference
    width_ties: str = "grow"  # a width comparison that is not significant: grow when the wider scores no lower, or keep_smaller
    depth_ties: str = "grow"  # the same for a new layer
    depth_select: str = "shallowest"  # after growth: the shallowest network the deepest is not better than (or: deepest)
    baseline_depth: int = 2
    baseline_width: int = 16
    width_factor: float = 2.0  # geometric width candidates: baseline * factor^k
    width_cap: int = 128
    width_tolerance: float = 0.005  # effect-size floor of width comparisons (searcher.search.evidence)
    width_patience: int = 2  # stop widening after this many candidates that do not take the best's place
    depth_cap: int = 6
    depth_min_improvement: float = 0.002  # effect-size floor of depth comparisons
    new_layer_factors: tuple[float, ...] = (0.5, 1.0, 2.0)  # new layer's width candidates x previous layer's
    regularization_min_improvement: float = 0.002  # a regularized network must beat the unregularized one by more than this
    regularization_trials: int = 8  # Optuna trials after the enqueued unregularized one
    regularization_in_flight: int = 1  # trials asked per batch before any is told (decides what TPE sees)
    regularizers: tuple[RegularizerRange, ...] = ()
    pruner_warmup_epochs: int = 8
    final_seeds: int = 3
    max_consecutive_failures: int = 5  # 0: never stop for failures
    transfer: TransferPlan | None = None  # None: no stage 5
    concurrency: int = 1  # trials the runner trains at once: only how eagerly a stage asks, never what it decides
    warm_start: bool = False  # width and depth trials grow from their parent's trained weights (Net2Net)
