"""The stages of "start small and go deep" (docs/design.md §1): 0-4, and 5 (transfer) when asked for.

Each stage is a deterministic function of the outcomes it has been told:
`next_trials(done)` says what to run next (nothing: the stage is over) and
`conclude(done)` says what was decided, with the numbers compared. Both replay
the same walk over `done`, so a stage holds no hidden progress of its own and a
fake evaluator can drive every rule in a unit test.
"""

from searcher.search.stages.base import SearchFailed, Stage, StageResult, fmt, record_in_study
from searcher.search.stages.baseline import BaselineStage
from searcher.search.stages.depth import DepthRound, DepthStage
from searcher.search.stages.final import FinalStage
from searcher.search.stages.regularization import RegularizationStage, regularization_name, regularized
from searcher.search.stages.transfer import TransferStage
from searcher.search.stages.width import WidthStage

__all__ = [
    "BaselineStage",
    "DepthRound",
    "DepthStage",
    "FinalStage",
    "RegularizationStage",
    "SearchFailed",
    "Stage",
    "StageResult",
    "TransferStage",
    "WidthStage",
    "fmt",
    "record_in_study",
    "regularization_name",
    "regularized",
]
