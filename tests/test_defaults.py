"""One source of defaults: conf/'s YAML. The structured config mirrors it, and what the search builds from the default
config (the plan, the trainer's settings, the stability rule, the layout) holds the YAML's values: a default that
drifts anywhere fails here."""

import dataclasses

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from searcher.config import DatasetConfig, SearcherConfig, validate
from searcher.data import DatasetOptions, load_dataset
from searcher.model.cnn import CNN
from searcher.search.evidence import cross_validation_folds
from searcher.search.plan import RegularizerRange, SearchPlan
from searcher.search.setup import make_plan
from searcher.train.auto import choose_training
from searcher.train.stability import StabilityRule
from searcher.train.trainer import TrainSettings

# SearchPlan field -> the setting it is built from
PLAN_SETTINGS = {
    "seed": "seed",
    "repeats": "search.repeats",
    "max_repeats": "search.max_repeats",
    "significance": "search.significance",
    "width_ties": "search.width.ties",
    "depth_ties": "search.depth.ties",
    "depth_select": "search.depth.select",
    "baseline_depth": "search.baseline.depth",
    "baseline_width": "search.baseline.width",
    "width_factor": "search.width.factor",
    "width_cap": "search.width.cap",
    "width_tolerance": "search.width.tolerance",
    "width_patience": "search.width.patience",
    "depth_cap": "search.depth.cap",
    "depth_min_improvement": "search.depth.min_improvement",
    "new_layer_factors": "search.depth.new_layer_factors",
    "regularization_min_improvement": "search.regularization.min_improvement",
    "regularization_trials": "search.regularization.trials",
    "regularization_in_flight": "search.regularization.trials_in_flight",
    "pruner_warmup_epochs": "search.regularization.pruner_warmup_epochs",
    "final_seeds": "search.final.seeds",
    "max_consecutive_failures": "search.max_consecutive_failures",
    "warm_start": "search.warm_start",
    "budget": "search.budget",  # (null; a value is parsed: tests/test_budget.py)
    "rungs": "search.rungs",
}
# built from more than one setting, or from none: checked one by one below
PLAN_OTHERS = {"data_identity", "family", "input_shape", "train", "folds", "regularizers", "transfer", "concurrency", "unit", "metric"}  # metric: search.metric made concrete for the data (train/metrics.py)


def composed(*overrides: str):
    """conf/'s YAML as Hydra composes it, before the schema sees it."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def yaml_value(yaml, key: str):
    value = OmegaConf.select(yaml, key)
    return tuple(value) if OmegaConf.is_list(value) else value


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetOptions("digits"))


def test_the_structured_config_mirrors_the_yaml(monkeypatch):
    monkeypatch.delenv("SEARCHER_DATA_DIR", raising=False)  # (data_dir's YAML reads it)
    # `model` is the family's own section (free-form: any family's settings): the YAML's is the cnn at its defaults
    assert validate(OmegaConf.to_container(composed(), resolve=False)) == dataclasses.replace(SearcherConfig(), model=CNN().identity())
    assert validate(OmegaConf.to_container(composed("+dataset=digits"), resolve=False)).dataset == DatasetConfig()


def test_the_plan_holds_the_yaml_values(digits):
    yaml = composed("device=cpu", "search.transfer.enabled=true", "search.transfer.dataset={name: digits}")
    plan = make_plan(validate(OmegaConf.to_container(yaml, resolve=False)), digits, target=digits)
    assert set(PLAN_SETTINGS) | PLAN_OTHERS == {f.name for f in dataclasses.fields(SearchPlan)}, "a new plan field: map it to its setting"
    for name, key in PLAN_SETTINGS.items():
        assert getattr(plan, name) == yaml_value(yaml, key), f"plan.{name} != {key}"
    assert plan.folds == cross_validation_folds(yaml.search.folds, len(digits.train), len(digits.val), yaml.search.warm_start)
    space = yaml.search.regularization.space
    assert plan.regularizers == tuple(RegularizerRange(name, r.low, r.high, r.get("log", False)) for name, r in space.items())
    assert (plan.transfer.top_k, plan.transfer.longest) == (yaml.search.transfer.top_k, yaml.search.transfer.longest)
    assert plan.concurrency == 1 and plan.data_identity == digits.identity


def test_the_trainer_stability_rule_and_layout_hold_the_yaml_values(digits):
    yaml = composed("device=cpu")
    plan = make_plan(validate(OmegaConf.to_container(yaml, resolve=False)), digits)
    t = yaml.train
    choice = choose_training("cpu", len(digits.train), t.batch_size, t.lr)  # lr and batch_size: auto, made concrete
    unregularized = {"weight_decay", "label_smoothing", "augment"}  # 0: the regularization stage turns them on
    # min_epoch_steps becomes passes, made concrete from the training split's size: one on digits (18 steps an epoch)
    assert {f.name for f in dataclasses.fields(TrainSettings)} == (set(t) - {"checkpoint_seconds", "min_epoch_steps"}) | unregularized | {"passes"}
    for field in dataclasses.fields(TrainSettings):
        made = {"lr": choice.lr, "batch_size": choice.batch_size, "stability": StabilityRule(**t.stability), "passes": 1}
        expected = made.get(field.name, t.get(field.name, 0.0))
        assert getattr(plan.train, field.name) == expected, f"train.{field.name}"
    # the trainer's and the rule's own defaults (tests and scripts build them with them) are the YAML's too
    assert plan.train == TrainSettings(optimizer=t.optimizer, lr=choice.lr, batch_size=choice.batch_size)
    assert StabilityRule() == StabilityRule(**t.stability)
    model = {key: value for key, value in yaml.model.items() if key != "_target_"}
    assert yaml.model._target_ == "searcher.model.cnn.CNN" and plan.input_shape == digits.input_shape
    assert plan.family == CNN(**model) == CNN()  # the family's own defaults are the YAML's too
