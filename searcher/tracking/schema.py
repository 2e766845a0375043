"""The record contract (docs/design.md §4) as names: every tag, metric, param and file a search keeps in MLflow.

The recorder writes them, the resume (history.py) and the report's reader read them
back; no other module spells a `searcher.*` tag. The run tree:

search run (Tags.ROLE = Roles.SEARCH, Tags.SEARCH_NAME)
  └ stage run per stage (Roles.STAGE, Tags.STAGE, Tags.WINNER)
      └ trial run per trial (Roles.TRIAL, Tags.TRIAL_KEY, Tags.STATUS, Tags.BEHAVIOR, Tags.DECISION)

Stage and trial runs are children by `mlflow.parentRunId` and carry Tags.SEARCH_RUN_ID,
so a resume finds a whole search with one query.
"""

from __future__ import annotations


class Roles:
    """Values of Tags.ROLE."""

    SEARCH = "search"
    STAGE = "stage"
    TRIAL = "trial"


class Tags:
    # every run
    ROLE = "searcher.role"
    SEARCH_NAME = "searcher.search_name"  # the UI filters one search's runs by it
    SEARCH_RUN_ID = "searcher.search_run_id"  # on stage and trial runs
    OWNER = "searcher.owner"  # the process holding the search's lease when the run was created or reopened (tracking/lease.py)
    # the search run
    DATASET = "searcher.dataset"
    PRESET = "searcher.preset"
    DEVICE = "searcher.device"
    FINAL_ARCH = "searcher.final_arch"
    INPUT = "searcher.input"  # JSON: channels, size, mean, std, classes of the model's input
    METRIC = "searcher.metric"  # JSON: what the stages optimised (Metric.describe); none on searches recorded before: accuracy
    MULTIRUN_JOB = "searcher.multirun_job"  # a Hydra multirun job: its number, id, sweep folder and overrides
    MULTIRUN_JOB_ID = "searcher.multirun_job_id"
    MULTIRUN_SWEEP_DIR = "searcher.multirun_sweep_dir"
    MULTIRUN_OVERRIDES = "searcher.multirun_overrides"
    # stage runs (and trial runs: the stage they belong to)
    STAGE = "searcher.stage"
    WINNER = "searcher.winner"
    WINNER_ARCH = "searcher.winner_arch"  # JSON of the winner's ArchSpec
    # trial runs
    TRIAL_KEY = "searcher.trial_key"  # TrialRequest.key: how a resume finds a finished trial
    STATUS = "searcher.status"  # ok | pruned | failed: set when the outcome is recorded (a resume reuses only these)
    DECISION = "searcher.decision"  # selected | rejected | pruned | failed | discarded (a speculative trial never asked for)
    SPECULATIVE = "searcher.speculative"  # true: trained as a guess in an idle slot (execution.speculate); used once asked for
    BEHAVIOR = "searcher.behavior"  # stable | overfitting | unstable | capped | diverged | pruned (stopped by the pruner)
    STOPPED_EARLY = "searcher.stopped_early"
    RUNG_STOP = "searcher.rung_stop"  # JSON: stopped at a rung, behind its reference beyond noise (train/rungs.py RungStop)
    ERROR = "searcher.error"
    NOTE = "searcher.note"  # a stage's remark on the trial ("beyond patience")
    WARM_START = "searcher.warm_start"
    PARENT_TRIAL = "searcher.parent_trial"  # warm starts: the trial key grown from
    GROWTH = "searcher.growth"  # warm starts: exact, or what the growth changed
    SOURCE_KEY = "searcher.source_key"  # transfer probes: the trial key probed
    ORPHANED = "searcher.orphaned"  # left RUNNING by a dead owner, marked FAILED at resume (or by its own process, which
    # opened it after it had lost the search's lease): whose it was and why it is dead
    PREFIX = "searcher."


# Per-epoch metrics (step = epoch): the learning curves a resume and the report read back.
EPOCH_METRICS = ("train_loss", "val_loss", "val_acc", "lr")

# With a metric other than accuracy (search.metric), the names with `acc` (val_acc, best_val_acc, test_acc,
# initial_val_acc, and score) hold the search's *score*: higher is better, an error negated and in units of the
# target's standard deviation (searcher/train/metrics.py). Beside them each trial logs the metric itself in the
# target's units, `val_<metric>` per epoch, `best_val_<metric>` and `test_<metric>` (e.g. val_rmse, test_rmse), and
# the search run `test_<metric>`: those are the numbers to read in the MLflow UI.


class Metrics:
    # trial runs (score also on stage runs: the winner's; a search recorded before that has it as best_val_acc there)
    BEST_VAL_ACC = "best_val_acc"  # the single best epoch's validation accuracy (the kept weights')
    BEST_EPOCH = "best_epoch"
    SCORE = "score"  # the best 3-epoch mean of validation accuracy (searcher.train.score): what the decisions compare
    EPOCHS = "epochs"
    TRAIN_SECONDS = "train_seconds"
    IMAGES_PER_SECOND = "images_per_second"
    TEST_ACC = "test_acc"  # final stage's trials, and the search run (their mean)
    TEST_LOSS = "test_loss"
    TRANSFER_ACC = "transfer_acc"  # transfer probes: accuracy on the target's validation split
    INITIAL_VAL_ACC = "initial_val_acc"  # warm starts: the grown network before training
    SEARCH_CLOCK = "search_clock"  # seconds the search had run (over all its attempts) when the trial was recorded
    # the search run
    SEARCH_SECONDS = "search_seconds"
    REPORT_SECONDS = "report_seconds"


class Params:
    """Trial params read back by name (the others: `arch.*`, `train.*`, `stage.*`, seed, repeat, fold)."""

    ARCH_DEPTH = "arch.depth"
    ARCH_WIDTHS = "arch.widths"
    TRAIN = "train."  # prefix of the training settings


class Files:
    """Artifacts, by path within their run."""

    STATE = "state.pt"  # a trial's kept weights
    # The kept weights' per-image validation evidence (paired comparisons), base64 text: packed correctness bits, float16 losses.
    # A metric other than accuracy (search.metric): float32 per-example values instead of correctness bits.
    EVIDENCE = {"val_correct": "val_correct.txt", "val_losses": "val_loss.txt", "val_values": "val_values.txt"}  # TrainResult field -> file
    RUNG_VALUES = "rung_values.json"  # search.rungs: each example's value at the rung epochs, base64 by epoch (a later trial's reference)
    TRACEBACK = "traceback.txt"  # a failed trial's
    DECISIONS = "decisions.json"  # a stage's decision log (the search run's too, with decisions.md)


# The procedure's stages in order (Stage.name; tests/test_schema.py checks them against the stages).
STAGE_ORDER = ("baseline", "width", "depth", "regularization", "final", "transfer")
