"""Model families as plug-ins, tables as data: the interface, the built-in mlp, a family of your own (examples/), CSV and
Parquet tables, from the command line and from Python."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, run_cli, search_runs

import searcher
from searcher.config import ConfigError
from searcher.data import DatasetError, DatasetOptions, DeviceData, load_dataset
from searcher.data.dataset import stratified_mask
from searcher.data.tables import TEST_FRACTION, class_labels
from searcher.model.classifier import Classifier
from searcher.model.cnn import CNN
from searcher.model.family import Family, FamilyError, LayerStack, build_network, family_from
from searcher.model.mlp import MLP
from searcher.search.setup import make_plan, model_family, own_settings
from searcher.search.trials import TrialRequest
from searcher.train.trainer import TrainSettings, train_trial

sys.path.insert(0, str(REPO / "examples"))
from residual_tower import ResidualTower, write_rings  # noqa: E402  (the example, as a user's module)

SETTINGS = TrainSettings(optimizer="adamw", lr=3e-3, batch_size=64)


def small_table(path: Path, rows: int = 600, seed: int = 0) -> Path:
    """Three classes from an interaction of two numbers and a category; a column with gaps, a constant one."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    colour = rng.choice(["red", "green", "blue"], size=rows)
    label = (x[:, 0] * x[:, 1] > 0).astype(int) + (colour == "red")
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": colour, "constant": 1.0})
    frame.loc[rng.random(rows) < 0.1, "c"] = np.nan
    frame["kind"] = np.array(["low", "mid", "high"])[label]
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


# the interface


def test_a_family_is_called_by_its_name_or_else_by_its_class():
    class Bare(Family):
        def build(self, spec, input_shape, outputs):
            return torch.nn.Linear(input_shape[0], outputs)

    assert Bare().label == "Bare" and MLP().label == "mlp" and CNN().label == "cnn" and Bare.width_unit == "width"


def test_a_layer_stack_is_a_value_with_a_stable_key_and_grows_by_the_default_rules():
    family = MLP()
    base = family.baseline(2, 16, (10,))
    assert base == LayerStack((16, 16)) and base.key() == LayerStack([16, 16]).key() and base.key() != LayerStack((16, 16), 0.1).key()
    assert family.widen(base, 32).widths == (32, 32) and family.deepen(base, 8, (10,)).widths == (16, 16, 8)
    assert LayerStack.from_dict(base.to_dict()) == base and base.with_dropout(0.2).dropout == 0.2


def test_the_family_and_its_settings_are_part_of_every_trial_key_but_the_cnns_keys_are_as_before():
    spec = LayerStack((16, 16))
    keys = {TrialRequest("width", "w16 d2", spec, SETTINGS, 0, "data", family=family).key for family in (MLP(), MLP(norm="batch"), ResidualTower())}
    assert len(keys) == 3
    arch = CNN().baseline(2, 16, (1, 8, 8))
    assert TrialRequest("width", "w16 d2", arch, SETTINGS, 0, "data", family=CNN()).key == TrialRequest("width", "w16 d2", arch, SETTINGS, 0, "data").key
    assert "family" not in str(CNN().key_part())


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"_target_": "nope.Family"}, "model._target_=nope.Family cannot be imported (ModuleNotFoundError"),
        ({"_target_": "searcher.data.DatasetOptions"}, "is not a searcher.Family subclass"),
        ({"_target_": "searcher.model.mlp.MLP", "depth": 3}, "model.depth is not a setting of MLP (it has: activation, norm)"),
        ({"_target_": "searcher.model.mlp.MLP", "activation": "relux"}, "activation='relux': one of relu, gelu, silu, tanh"),
        ({"_target_": "searcher.model.cnn.CNN", "block": "dense"}, "model.block='dense' is not one of 'plain', 'residual' (CNN.block); set it to one."),
        ({"activation": "relu"}, "model._target_=None is not a class path"),
        ({"_target_": "searcher.model.mlp.MLP", "activation": 3}, "model.activation=3 is not a str (MLP.activation); set it to one."),
        ({"_target_": "test_families.Normed", "norm": "yes"}, "model.norm='yes' is not a bool (Normed.norm); set it to one."),
        ({"_target_": "test_families.Sized", "kernel": "abc"}, "model.kernel='abc' is not an int (Sized.kernel); set it to one."),
        ({"_target_": "test_families.Sized", "kernel": 2.5}, "model.kernel=2.5 is not an int (Sized.kernel)"),
        ({"_target_": "test_families.Sized", "pool": "sum"}, "model.pool='sum' is not one of 'max', 'mean' (Sized.pool)"),
    ],
)
def test_a_family_that_cannot_be_had_is_one_sentence_naming_the_setting(settings, says):
    with pytest.raises(FamilyError, match=None) as raised:
        family_from(settings)
    assert says in str(raised.value) and "\n" not in str(raised.value)


@dataclasses.dataclass(frozen=True)
class Sized(searcher.Family):
    """A family of a user's whose settings have types: a wrong one stops the run before anything trains."""

    kernel: int = 3
    pool: Literal["max", "mean"] = "max"
    scale: float | None = None


@dataclasses.dataclass(frozen=True)
class Normed(searcher.Family):
    """A family of a user's with a setting the mlp has too."""

    norm: bool = False

    def build(self, spec, input_shape, outputs):
        return MLP().build(spec, input_shape, outputs)


def test_naming_another_family_on_the_command_line_drops_only_the_cnns_untouched_defaults():
    composed = {**CNN().identity(), "_target_": "residual_tower.ResidualTower", "stem": 8}
    assert own_settings(composed) == {"_target_": "residual_tower.ResidualTower", "stem": 8}
    assert own_settings({**MLP().identity(), "_target_": "residual_tower.ResidualTower"}) == {"_target_": "residual_tower.ResidualTower"}
    with pytest.raises(FamilyError, match=r"replaces the mlp model group's class, whose norm=layer would reach Normed .*select your family with model=custom"):
        own_settings({**MLP().identity(), "_target_": "test_families.Normed"})  # (its own `norm` default is not the mlp's)
    assert own_settings({"_target_": "test_families.Normed", "norm": True}) == {"_target_": "test_families.Normed", "norm": True}  # model=custom
    changed = {**composed, "block": "residual"}  # set by the user for a family that has no such setting: refused, not dropped
    config = dataclasses.replace(searcher.api.compose()[0], model=changed)
    with pytest.raises(ConfigError, match="model.block is not a setting of ResidualTower"):
        model_family(config)


def test_model_custom_hands_your_family_only_what_you_set_where_a_tables_mlp_would_hand_it_its_own():
    table = ("+dataset=table", "dataset.path=t.csv", "dataset.target=y", "model._target_=test_families.Normed")
    config = searcher.api.compose(*table, "model=custom")[0]
    assert config.model == {"_target_": "test_families.Normed"} and model_family(config) == Normed()
    assert model_family(searcher.api.compose(*table, "model=custom", "+model.norm=true")[0]) == Normed(norm=True)
    with pytest.raises(ConfigError, match="select your family with model=custom model._target_=test_families.Normed"):
        model_family(searcher.api.compose(*table)[0])  # (the mlp's norm=layer would have reached it)


def test_a_family_class_given_where_its_object_goes_is_one_sentence():
    with pytest.raises(searcher.SearchError, match=r"family=Normed is not a model family object; pass an instance, family=Normed\(\)") as raised:
        searcher.search("search=quick", family=Normed)
    assert raised.value.exit_code == 2


def test_the_mlp_trains_on_images_and_tables_and_its_dropout_is_the_trials_own():
    digits = load_dataset(DatasetOptions("digits", classes=(0, 1)))
    spec = LayerStack((16,), dropout=0.3)
    one = train_trial(spec, DeviceData(digits, torch.device("cpu")), SETTINGS, 5, family=MLP())
    two = train_trial(spec, DeviceData(digits, torch.device("cpu")), SETTINGS, 5, family=MLP())
    assert one.best_val_acc > 0.9 and [r.val_acc for r in one.history] == [r.val_acc for r in two.history]
    network = build_network(MLP(norm="batch"), LayerStack((8, 4)), (3, 4, 4), 5, seed=0)
    assert network(torch.zeros(2, 3, 4, 4)).shape == (2, 5)


def test_the_mlp_under_layer_norm_tells_an_input_from_its_double_and_old_saved_mlps_load_as_they_were(tmp_path):
    """Layer norm normalises each example over its units: a first layer without a bias made x and 2x one output (iris
    fell to 76.7% test, where a logistic regression gets 86.7%). A model saved by then has no such biases: zero is it."""
    from searcher.model.classifier import WEIGHTS_FILE, load_classifier, save_classifier

    x = torch.randn(4, 5)
    network = build_network(MLP(), LayerStack((8, 8)), (5,), 3, seed=0)
    assert not torch.allclose(network(x), network(2 * x))
    assert all(layer.bias is None for layer in build_network(MLP(norm="batch"), LayerStack((8,)), (5,), 3, seed=0) if isinstance(layer, torch.nn.Linear) and layer.out_features == 8)
    keys = {TrialRequest("width", "w16 d2", LayerStack((16,)), SETTINGS, 0, "data", family=family).key for family in (MLP(), dataclasses.replace(MLP()))}
    assert len(keys) == 1 and MLP().key_part() == MLP().identity() | {"revision": 1}  # (trials of the old network are not reused)

    model = Classifier(LayerStack((8, 8)), (5,), (0.0,) * 5, (1.0,) * 5, [0, 1, 2], MLP(), input_dtype="float32")
    hidden_biases = [f"network.{index}.bias" for index in (1, 4)]  # Flatten, [Linear, LayerNorm, ReLU] x 2, ...
    with torch.no_grad():
        for key in hidden_biases:
            model.get_parameter(key).zero_()
    save_classifier(model, tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    old = {key: value for key, value in torch.load(weights, weights_only=True).items() if key not in hidden_biases}
    torch.save(old, weights)
    loaded = load_classifier(tmp_path)
    assert torch.equal(loaded(x), model.eval()(x))
    torch.save({key: value for key, value in old.items() if key != "network.2.weight"}, weights)  # not a bias: refused
    with pytest.raises(RuntimeError, match="network.2.weight"):
        load_classifier(tmp_path)


def test_the_example_familys_growth_keeps_the_parents_function():
    family, shape = ResidualTower(stem=8), (6,)
    parent = LayerStack((4, 4))
    trained = build_network(family, parent, shape, 3, seed=1)
    for tensor in trained.state_dict().values():
        tensor.add_(torch.randn_like(tensor) * 0.1)  # weights unlike a fresh network's
    inputs = torch.randn(32, 6)
    for child in (family.widen(parent, 8), family.deepen(parent, 2, shape), family.deepen(family.widen(parent, 8), 16, shape)):
        state, notes = family.grow(parent, trained.state_dict(), child, shape, 3, torch.Generator().manual_seed(0), inputs)
        grown = family.build(child, shape, 3)
        grown.load_state_dict(state)
        assert notes == () and torch.allclose(grown.eval()(inputs), trained.eval()(inputs), atol=1e-5), child


# tables


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_is_read_as_standardised_feature_rows_with_one_hot_categories_and_a_stratified_test_split(tmp_path, suffix):
    path = small_table(tmp_path / f"t{suffix}")
    table = load_dataset(DatasetOptions("table", path=path, target="kind"))
    assert table.feature_names == ("a", "b", "c", "colour=blue", "colour=green", "colour=red", "constant")
    assert table.class_names == ("high", "low", "mid") and table.num_classes == 3 and table.input_shape == (7,)
    assert table.train.images.dtype == torch.float32 and not torch.isnan(table.train.images).any()
    assert len(table.train) + len(table.val) + len(table.test()) == 600 and len(table.test()) == 120
    rows = DeviceData(table, torch.device("cpu")).train.normalise(table.train.images)
    assert torch.allclose(rows[:, :6].mean(0), torch.zeros(6), atol=1e-5) and torch.allclose(rows[:, :6].std(0), torch.ones(6), atol=1e-4)
    assert torch.equal(rows[:, 6], torch.zeros(len(rows)))  # a constant column: centred, not divided by zero
    assert not table.augmentable and table.size == 0
    again = load_dataset(DatasetOptions("table", path=path, target="kind"))
    assert again.identity == table.identity
    small_table(path, seed=1)  # the same file name, other rows: other data, other trial keys
    assert load_dataset(DatasetOptions("table", path=path, target="kind")).identity != table.identity


def test_class_names_are_the_target_columns_own_values_and_survive_the_saved_model(tmp_path):
    """An integer or boolean target's classes are 0 and 1 or False and True, not "0" and "1", so comparing a model's
    predictions with the file's column holds, also after the model is saved and rebuilt."""
    frame = pd.read_csv(small_table(tmp_path / "t.csv"))
    frame["level"] = frame["kind"].map({"low": 0, "mid": 1, "high": 2})
    frame["high"] = frame["kind"] == "high"
    for target, expected in [("level", (0, 1, 2)), ("high", (False, True))]:
        frame.drop(columns=["kind"]).to_csv(tmp_path / f"{target}.csv", index=False)
        table = load_dataset(DatasetOptions("table", path=tmp_path / f"{target}.csv", target=target))
        assert table.class_names == expected and [type(name) for name in table.class_names] == [type(value) for value in expected]
        model = Classifier(LayerStack((4,)), table.input_shape, table.mean, table.std, range(len(expected)), MLP(), table.feature_names,
                           table.class_names, columns=table.columns)
        rebuilt = Classifier.from_description(json.loads(json.dumps(model.description())))  # as load_model rebuilds it
        assert rebuilt.class_names == expected and {rebuilt.class_names[i] for i in range(len(expected))} == set(frame[target].tolist())


def test_new_rows_are_encoded_as_training_encoded_the_file_and_what_training_never_saw_is_refused(tmp_path):
    """model.rows(frame): gaps take the training rows' median, categories the training file's one-hot columns; a
    pd.get_dummies frame (colour_blue, not colour) or an unseen category is an error naming it, never zeros."""
    path = small_table(tmp_path / "t.csv")
    table = load_dataset(DatasetOptions("table", path=path, target="kind"))
    model = Classifier(LayerStack((4,)), table.input_shape, table.mean, table.std, [0, 1, 2], MLP(), table.feature_names, table.class_names,
                       columns=table.columns)
    model = Classifier.from_description(json.loads(json.dumps(model.description())))  # as load_model rebuilds it
    frame = pd.read_csv(path)
    assert model.rows(frame).shape == (600, 7) and model(model.rows(frame)).shape == (600, 3)  # (the target column ignored)
    train_median = float(np.median(table.train.images[:, 2].numpy().tolist() + table.val.images[:, 2].numpy().tolist()))
    new = pd.DataFrame({"colour": ["green", None], "constant": [1.0, 1.0], "c": [np.nan, 0.5], "b": [0.0, 1.0], "a": [2.0, 3.0]})
    with pytest.raises(ValueError, match=r"column 'colour' holds value\(s\) '<missing>' training never saw"):
        model.rows(new)
    new.loc[1, "colour"] = "red"
    rows = model.rows(new)
    assert rows.tolist()[1] == [3.0, 1.0, 0.5, 0.0, 0.0, 1.0, 1.0]
    assert rows[0, 2].item() == pytest.approx(train_median, abs=1e-6) and rows[0].tolist()[3:] == [0.0, 1.0, 0.0, 1.0]
    assert torch.equal(model.rows(new.astype({"c": "Float64"})), rows)  # pandas' nullable numbers: a gap is pd.NA
    assert torch.equal(model.rows(new.iloc[1]), rows[1:]) and torch.equal(model.rows(new.iloc[1].to_dict()), rows[1:])  # one row
    with pytest.raises(ValueError, match="rows come as a pandas DataFrame with the training file's columns .* got ndarray"):
        model.rows(new.to_numpy())
    with pytest.raises(TypeError, match=r"the model takes a torch tensor; got ndarray \(convert with torch.from_numpy"):
        model(rows.numpy())
    with pytest.raises(ValueError, match=r"the rows lack the column\(s\) 'colour' the model reads"):
        model.rows(pd.get_dummies(new, columns=["colour"]))
    with pytest.raises(ValueError, match=r"column 'a' held numbers in training; these rows hold"):
        model.rows(new.assign(a=["x", "y"]))
    images = Classifier(CNN().baseline(1, 4, (1, 8, 8)), (1, 8, 8), (0.5,), (0.2,), [0, 1])
    with pytest.raises(ValueError, match="this model was not searched on a table"):
        images.rows(frame)


@pytest.mark.parametrize(
    ("target", "task", "says"),
    [
        (None, "auto", "dataset.target is not set"),
        ("colours", "auto", "dataset.target=colours is not a column of t.csv; its columns are: a, b, c, colour, constant, kind."),
        ("Kind", "auto", "dataset.target=Kind is not a column of t.csv; did you mean kind?"),
        ("kind", "regression", "dataset.target=kind is not numeric; regression needs numbers"),
        ("constant", "auto", "dataset.target=constant has a single value"),
        ("constant", "regression", "dataset.target=constant has a single value"),
        ("a", "classification", "dataset.target=a holds fractions; classes are whole numbers or text (a quantity: dataset.task=regression)"),
    ],
)
def test_a_table_that_cannot_be_searched_says_why(tmp_path, target, task, says):
    path = small_table(tmp_path / "t.csv")
    with pytest.raises(DatasetError) as raised:
        load_dataset(DatasetOptions("table", path=path, target=target, task=task))
    assert says in str(raised.value)


def test_from_the_command_line_a_table_is_searched_with_the_mlp_and_the_cnn_is_refused(tmp_path):
    small_table(tmp_path / "t.csv")
    refused = run_cli("+dataset=table", "dataset.path=t.csv", "dataset.target=kind", "model=cnn", cwd=tmp_path)
    assert refused.returncode == 2 and "the cnn family takes images" in refused.stderr and not (tmp_path / "outputs").exists()
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    result = run_cli("+dataset=table", "dataset.path=t.csv", "dataset.target=kind", *TINY, "execution=serial", f"tracking.uri={uri}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "7 features) · model mlp" in result.stdout and "float32 rows (model.rows(frame) makes them from the file's columns) in" in result.stdout
    assert "val rows, " in result.stdout and "validation rows" in result.stdout and " images" not in result.stdout.split("stage 0")[0]
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    assert trials and all(run.data.params["family._target_"] == "searcher.model.mlp.MLP" for run in trials)
    assert not any("augment" in run.data.params.get("stage.augment", "") or "train.augment" in run.data.params and float(run.data.params["train.augment"]) > 0 for run in trials)
    model = searcher.load_model("models:/searcher-table-t/1", uri)  # (named after the file)
    table = load_dataset(DatasetOptions("table", path=tmp_path / "t.csv", target="kind"))
    frame = pd.read_csv(tmp_path / "t.csv")
    test_rows = frame[stratified_mask(class_labels(frame["kind"], "kind")[0], TEST_FRACTION, 0)]  # read_table's test split
    assert torch.equal(model.rows(test_rows), table.test().images)  # new rows encoded as the searched ones were
    accuracy = (model(table.test().images).argmax(1) == table.test().labels).float().mean().item()
    (search_run,) = search_runs(uri, "tags.`searcher.role` = 'search'")
    assert abs(accuracy - search_run.data.metrics["test_acc"]) < 0.1 and model.feature_names == table.feature_names
    assert model.class_names == ("high", "low", "mid")
    assert json.loads(search_run.data.tags["searcher.input"])["width_unit"] == "units"  # the width figure's axis: units, not channels
    # the README's snippet for new rows, on this table: its file and store names, the rows without their target
    snippet = re.search(r"<!-- the README table snippet: [^>]*-->\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert snippet, "README.md lost its table snippet (or its marker)"
    frame.drop(columns=["kind"]).to_csv(tmp_path / "new_t.csv", index=False)
    (tmp_path / "mlflow.db").symlink_to(tmp_path / "m.db")
    program = snippet.group(1).replace("customers", "t") + "\nimport json; print(json.dumps(churned))"
    ran = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    predicted = json.loads(ran.stdout)
    assert len(predicted) == 600 and set(predicted) <= {"high", "low", "mid"} and len(set(predicted)) > 1


def test_your_own_family_from_python_and_from_the_command_line_reloads_with_load_model(tmp_path):
    """The example family (examples/residual_tower.py) on the table it writes: searcher.search(family=, data=), then the
    command line naming the class, then searcher.load_model in a new process that imports the family by its path."""
    table = write_rings(tmp_path / "rings.csv", rows=800)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    found = searcher.search(
        *TINY, "execution=serial", f"tracking.uri={uri}", "search.warm_start=true", family=ResidualTower(stem=16),
        data=pd.read_csv(table), target="ring", output_dir=tmp_path / "api",
    )
    assert found.test_acc > 0.5 and type(found.model.network).__name__ == "Tower" and found.model.family == ResidualTower(stem=16)
    trials = search_runs(uri, "tags.`searcher.role` = 'trial'")
    assert any(run.data.tags.get("searcher.warm_start") == "true" for run in trials), "the family's own growth rule was used"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "examples"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "searcher", "+dataset=table", f"dataset.path={table}", "dataset.target=ring", "model=custom", "model._target_=residual_tower.ResidualTower",
               "+model.stem=8", *TINY, "execution=serial", f"tracking.uri={uri}"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model residual_tower" in result.stdout
    program = f"import searcher, torch; m = searcher.load_model('models:/searcher-table-rings/1', '{uri}'); print(type(m.network).__name__, m.family.stem, m(torch.zeros(3, 6)).shape)"
    loaded = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert loaded.stdout.split() == ["Tower", "8", "torch.Size([3,", "4])"], loaded.stderr[-2000:]


# sequences


def test_the_generated_sequences_label_each_with_the_token_after_its_one_marker():
    from searcher.data.sequences import generate

    train, labels, test, test_labels = generate(length=12, vocabulary=6, train_size=300, test_size=50, seed=3)
    assert train.shape == (300, 12, 6) and test.shape == (50, 12, 6) and train.dtype == np.float32
    tokens = train.argmax(2)
    assert ((tokens == 0).sum(1) == 1).all()
    marker = (tokens == 0).argmax(1)
    assert np.array_equal(labels, tokens[np.arange(300), marker + 1] - 1) and set(labels.tolist()) == set(range(5))
    assert np.array_equal(generate(12, 6, 300, 50, seed=3)[0], train)


def test_a_grammars_sentences_each_have_one_class_and_their_tokens_pair_into_its_expansions():
    from searcher.data.sequences import grammar

    train, labels, test, test_labels = grammar(vocabulary=6, levels=3, branching=2, rules=3, train_size=3000, test_size=500, seed=4)
    assert train.shape == (3000, 8, 6) and test.shape == (500, 8, 6) and train.dtype == np.float32
    sentences = np.concatenate([train, test]).argmax(2)
    classes = np.concatenate([labels, test_labels])
    assert set(classes.tolist()) == set(range(6))
    assert len({tuple(sentence) for sentence in sentences.tolist()}) == len(sentences)  # distinct: no test sentence is a training one
    bottom_pairs = {tuple(pair) for pair in sentences.reshape(-1, 2).tolist()}
    assert len(bottom_pairs) == 6 * 3  # the lowest level's expansions, each a pair of tokens, all drawn
    every = grammar(3, 2, 2, 2, 20, 4, seed=4)  # 3 classes x 2^3 derivations: 24 distinct sentences only if no two share one
    assert np.bincount(np.concatenate([every[1], every[3]])).tolist() == [8, 8, 8]
    with pytest.raises(ValueError, match="25 distinct sentences asked for; the grammar has 24"):
        grammar(3, 2, 2, 2, 21, 4, seed=4)
    assert np.array_equal(grammar(6, 3, 2, 3, 3000, 500, seed=4)[0], train) and not np.array_equal(grammar(6, 3, 2, 3, 3000, 500, seed=5)[0], train)
    dataset = load_dataset(DatasetOptions("grammar", vocabulary=6, levels=2, branching=3, rules=3, train_size=180, test_size=60))
    assert dataset.input_shape == (9, 6) and dataset.num_classes == 6 and "rules=3" in dataset.identity
    with pytest.raises(DatasetError, match=r"dataset.train_size \+ dataset.test_size = 400 sentences, more than half the 96 the grammar has"):
        load_dataset(DatasetOptions("grammar", vocabulary=6, levels=2, branching=3, rules=2, train_size=300, test_size=100))


def test_a_transformer_reads_the_sequences_and_its_final_model_takes_one_hot_rows():
    dataset = load_dataset(DatasetOptions("sequences", sequence_length=10, vocabulary=5, train_size=400, test_size=100))
    assert dataset.input_shape == (10, 5) and dataset.describe_input() == "10 tokens of 5" and not dataset.augmentable
    from searcher.model.classifier import Classifier
    from searcher.model.transformer import Transformer

    family = Transformer(heads=2)
    spec = family.deepen(family.baseline(1, 8, dataset.input_shape), 16, dataset.input_shape)
    model = Classifier(spec, dataset.input_shape, dataset.mean, dataset.std, range(4), family, input_dtype="float32")
    rows = dataset.val.images[:3]
    network = model.network.eval()
    assert torch.equal(model(rows), network(rows))  # one-hot tokens go in as they are
    assert Classifier.from_description(model.description()).family == family
    with pytest.raises(ValueError, match="the transformer family takes one-hot token sequences"):
        family.baseline(2, 16, (7,))
    with pytest.raises(ValueError, match="the cnn family takes images"):
        CNN().baseline(2, 16, dataset.input_shape)


def test_settings_of_the_declared_types_reach_the_family():
    assert family_from({"_target_": "test_families.Sized", "kernel": 5, "pool": "mean", "scale": 1}) == Sized(5, "mean", 1)
    assert family_from({"_target_": "test_families.Sized", "scale": None}) == Sized()


def test_warm_starts_asked_of_a_family_that_cannot_grow_leave_the_comparisons_as_they_were():
    """Warm starts keep a fixed split (a warm child's extra seeds grow from weights that saw every fold); a family
    without grow() trains from scratch, so asking for warm starts must not take its cross-validation away."""
    digits = load_dataset(DatasetOptions("digits"))
    cold = make_plan(searcher.api.compose("model=mlp", "device=cpu")[0], digits)
    asked = make_plan(searcher.api.compose("model=mlp", "device=cpu", "search.warm_start=true")[0], digits)
    assert (asked.warm_start, asked.folds) == (False, cold.folds) and cold.folds > 1
    assert make_plan(searcher.api.compose("device=cpu", "search.warm_start=true")[0], digits).folds == 1  # the cnn grows


def test_a_target_that_is_not_a_column_lists_them_all_or_says_how_many_more_and_a_dataframe_needs_one(tmp_path):
    from searcher.data.tables import columns_hint

    assert columns_hint("zz", [f"c{i}" for i in range(25)]).endswith("c18, c19 and 5 more")
    frame = pd.read_csv(small_table(tmp_path / "t.csv"))
    with pytest.raises(searcher.SearchError, match=r"data=DataFrame needs target=, the column to predict \(e.g. target='kind'\)"):
        searcher.search("search=quick", data=frame)
    with pytest.raises(searcher.SearchError, match="target='KIND' is not a column of the DataFrame; did you mean kind?"):
        searcher.search("search=quick", data=frame, target="KIND")
