"""The staged search: stages, the controller and their Optuna studies. Knows nothing of MLflow."""

from searcher.search.controller import Runner, SearchResult, run_search, run_stage
from searcher.search.plan import RegularizerRange, SearchPlan
from searcher.search.stages import SearchFailed, Stage, StageResult
from searcher.search.studies import StudyBook
from searcher.search.trials import Candidate, DecisionEntry, TrialOutcome, TrialRequest

__all__ = [
    "Candidate",
    "DecisionEntry",
    "RegularizerRange",
    "Runner",
    "SearchFailed",
    "SearchPlan",
    "SearchResult",
    "Stage",
    "StageResult",
    "StudyBook",
    "TrialOutcome",
    "TrialRequest",
    "run_search",
    "run_stage",
]
