"""Config composition and validation: bad settings fail before anything trains, exit 2, naming the setting."""

from pathlib import Path

import pytest
from conftest import REPO, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from searcher.config import ConfigError, validate


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=False)


def test_defaults_compose_and_validate_with_digits_filled_in():
    config = validate(composed())
    assert config.dataset.name == "digits" and config.search.preset == "default"
    assert config.tracking.uri == "sqlite:///mlflow.db"
    assert config.train.batch_size == config.train.lr == config.execution.kind == "auto"  # chosen from the device at the start


def test_a_set_batch_and_learning_rate_are_kept_as_numbers_of_their_type():
    config = validate(composed("train.batch_size=128", "train.lr=1"))
    assert config.train.batch_size == 128 and config.train.lr == 1.0 and isinstance(config.train.lr, float)  # keyed as before


def test_dataset_is_appended_with_plus_and_quick_preset_overrides_default():
    config = validate(composed("+dataset=digits", "search=quick", "dataset.classes=[0,1,2]"))
    assert config.dataset.classes == [0, 1, 2]
    assert config.search.preset == "quick" and config.search.width.cap == 32
    assert config.search.depth.min_improvement == 0.002  # inherited from the default preset


def test_a_regularizer_deleted_from_the_space_stays_out_of_it():
    config = validate(composed("~search.regularization.space.label_smoothing"))
    assert list(config.search.regularization.space) == ["weight_decay", "dropout", "augment"]  # (not put back by the schema)
    assert list(validate(composed("search=quick", "~search.regularization.space.augment")).search.regularization.space) == [
        "weight_decay", "dropout", "label_smoothing"
    ]  # (from a preset that inherits the space too)


@pytest.mark.parametrize(
    "override,setting",
    [
        ("seed=abc", "seed"),
        ("search.baseline.width=0", "search.baseline.width"),
        ("search.width.tolerance=-0.1", "search.width.tolerance"),
        ("search.depth.cap=1", "search.depth.cap"),
        ("train.optimizer=lion", "train.optimizer"),
        ("train.stability.max_epochs=2", "train.stability.max_epochs"),
        ("+search.regularization.space.mixup={low:0,high:1}", "search.regularization.space.mixup"),
        ("+tracking.colour=red", "tracking.colour"),
        ("search.regularization.space.dropout.high=2.0", "search.regularization.space.dropout"),
        ("search.folds=some", "search.folds"),
        ("search.folds=0", "search.folds"),
        # values that passed every check and then crashed after the search run existed (issue 14)
        ("seed=99999999999999999999", "seed=99999999999999999999 is out of range; allowed: an integer in [0, 2147483647]"),
        ("search.width.factor=inf", "search.width.factor=inf is out of range; allowed: a finite number"),
        ("search.baseline.width=100000", "search.baseline.width=100000 is out of range"),
        ("train.batch_size=1e11", "train.batch_size"),
        ("train.batch_size=100000", "train.batch_size=100000 is out of range"),
        ("train.checkpoint_seconds=inf", "train.checkpoint_seconds=inf is out of range; allowed: a finite number"),
        ("train.stability.max_epochs=100000", "train.stability.max_epochs=100000 is out of range"),
        ("train.lr=nan", "train.lr=nan is out of range"),
        ("search.regularization.space.dropout.high=nan", "search.regularization.space.dropout.high=nan"),
        ("search.depth.new_layer_factors=[1.0,inf]", "search.depth.new_layer_factors=inf"),
        ("tracking.lease_seconds=0", "tracking.lease_seconds=0.0 is out of range; allowed: a number of seconds from 1 to 86400"),
    ],
)
def test_bad_values_name_the_setting(override, setting):
    with pytest.raises(ConfigError) as error:
        validate(composed(override))
    assert setting in str(error.value)


def test_cross_validation_and_warm_starts_do_not_mix():
    with pytest.raises(ConfigError, match="search.folds=3 cannot be combined with search.warm_start=true"):
        validate(composed("search.folds=3", "search.warm_start=true"))
    assert validate(composed("search.folds=auto", "search.warm_start=true")).search.folds == "auto"  # auto: the fixed split


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=abc", "train.lr='abc' is not valid: expected a number or auto."),
        ("train.batch_size=12.5", "train.batch_size=12.5 is not valid: expected an integer or auto."),
        ("train.batch_size=0", "train.batch_size=0 is out of range; allowed: auto or an integer in [1, 65536]."),
        ("execution.max_trials_per_gpu=0", "execution.max_trials_per_gpu=0 is out of range; allowed: an integer >= 1."),
        ("seed=abc", "seed='abc' is not valid: expected an integer."),
        ("report.trial_plots=maybe", "report.trial_plots='maybe' is not valid: expected true or false, or null."),
        ("+dataset.classes=[0,a]", "dataset.classes holds 'a', which is not valid: expected a list of integers, e.g. [0,1,2], or null."),
        ("search.regularization.space.dropout.high=x", "search.regularization.space.dropout.high='x' is not valid: expected a number."),
        ("search.budget=soon", "search.budget='soon' is not a budget: give a wall time (45m, 2h, 1h30m, 90s) or a compute budget (300 epochs)."),
    ],
)
def test_a_bad_value_names_the_full_key_and_the_type_it_takes(override, message):
    with pytest.raises(ConfigError) as error:
        validate(composed(override))
    assert str(error.value) == message


def test_depth_cap_message_names_the_allowed_values():
    with pytest.raises(ConfigError, match=r"search.depth.cap=1 is out of range; allowed: from search.baseline.depth \(2\) to 64"):
        validate(composed("search.depth.cap=1"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["+dataset=nope"], "dataset"),
        (["seed=abc"], "seed"),
        (["search.width.tolerance=-1"], "search.width.tolerance"),
        (["tracking.uri=bogus://x"], "tracking.uri"),
        (["no_such_key=1"], "no_such_key"),
        (["device=cuda:99"], "device=cuda:99 but this machine has"),  # checked against what torch sees, before any run
        (["device=cuda:x"], "device"),
    ],
)
def test_cli_exits_2_before_training_and_leaves_no_run(tmp_path: Path, args, needle):
    db = tmp_path / "m.db"
    result = run_cli(*args, f"tracking.uri=sqlite:///{db}" if "tracking.uri" not in args[0] else "seed=0", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not db.exists()  # nothing was recorded, so no run can be left RUNNING
