"""Every conf/dataset/*.yaml composes and validates; the new dataset settings are range-checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from searcher.config import ConfigError, validate
from searcher.data import LOADERS
from searcher.data.registry import TABLES

CONF = Path(__file__).resolve().parent.parent / "conf"
NAMES = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return validate(OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=False))


def test_every_loader_has_a_config_and_every_config_a_loader():
    assert NAMES == sorted(set(LOADERS) | TABLES)


@pytest.mark.parametrize("name", NAMES)
def test_dataset_config_validates(name):
    assert config(f"+dataset={name}").dataset.name == name


def test_tables_train_with_adamw_unless_the_command_line_says_otherwise():
    """The auto SGD rate is the CNN's; on small regression tables it blew trials up (docs/BENCHMARKS.md §7)."""
    table = config("+dataset=table", "dataset.path=t.csv", "dataset.target=y")
    assert (table.train.optimizer, table.train.lr, table.model["_target_"]) == ("adamw", 0.003, "searcher.model.mlp.MLP")
    assert (table.dataset.path, table.dataset.target, table.dataset.task) == ("t.csv", "y", "auto")
    chosen = config("+dataset=table", "dataset.path=t.csv", "dataset.target=y", "train.optimizer=sgd", "train.lr=auto")
    assert (chosen.train.optimizer, chosen.train.lr) == ("sgd", "auto")
    assert config().train.optimizer == "sgd"  # images keep the CNN's


def test_mirror_comes_from_the_environment(monkeypatch):
    assert config("+dataset=mnist").dataset.mirror is None
    monkeypatch.setenv("SEARCHER_DATASET_MIRROR", "http://mirror.example/data/")
    assert config("+dataset=mnist").dataset.mirror == "http://mirror.example/data/"
    assert config("+dataset=mnist", "dataset.mirror=http://other/").dataset.mirror == "http://other/"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("+dataset=synthetic", "dataset.image_size=2"), "dataset.image_size=2 is out of range; allowed: an integer from 4 to 1024"),
        (("+dataset=synthetic", "dataset.num_classes=1"), "dataset.num_classes=1 is out of range"),
        (("+dataset=synthetic", "dataset.num_classes=10", "dataset.train_size=5"), "dataset.train_size=5 is out of range"),
        (("+dataset=imagefolder", "dataset.channels=2"), "dataset.channels=2 is out of range"),
        (("+dataset=cifar10", "+dataset.flip=true"), "dataset.flip=True is out of range"),
        (("+dataset=cifar10", "+dataset.extra=true"), "dataset.extra=True is out of range"),
        (("+dataset=cifar10", "dataset.std=[0.2,0,0.2]"), "dataset.std=[0.2, 0.0, 0.2] is out of range"),
    ],
)
def test_out_of_range_settings_name_themselves(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config(*overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("+dataset=grammar", "dataset.rules=9"), "dataset.rules=9 is out of range; allowed: an integer from 1 to vocabulary^(branching-1) = 8"),
        (("+dataset=grammar", "dataset.branching=1"), "dataset.branching=1 is out of range"),
        (("+dataset=grammar", "dataset.levels=13"), "dataset.levels=13 is out of range; allowed: an integer >= 1 with 2^levels <= 4096 tokens"),
        (("+dataset=sequences", "+dataset.rules=2"), "dataset.rules=2 is out of range; allowed: null except for grammar"),
    ],
)
def test_the_grammar_settings_are_checked_before_anything_is_generated(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("^", r"\^").replace("(", r"\(").replace(")", r"\)")):
        config(*overrides)
    assert config("+dataset=grammar", "dataset.rules=8").dataset.rules == 8  # 8 x 8 expansions use every pair once
