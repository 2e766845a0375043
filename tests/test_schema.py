"""The record's names (tracking/schema.py) agree with the code that makes what they name."""

import dataclasses

from searcher.search.stages import BaselineStage, DepthStage, FinalStage, RegularizationStage, TransferStage, WidthStage
from searcher.tracking.queries import find_search, quoted, tag_is
from searcher.tracking.schema import EPOCH_METRICS, STAGE_ORDER, Files
from searcher.train.trainer import EpochRecord, TrainResult


def test_stage_order_is_the_procedure():
    assert STAGE_ORDER == tuple(s.name for s in (BaselineStage, WidthStage, DepthStage, RegularizationStage, FinalStage, TransferStage))


def test_epoch_metrics_and_evidence_files_name_fields_of_the_results():
    assert set(EPOCH_METRICS) <= {f.name for f in dataclasses.fields(EpochRecord)}
    assert set(Files.EVIDENCE) <= {f.name for f in dataclasses.fields(TrainResult)}


def test_filter_values_are_quoted_so_that_mlflow_reads_them_back():
    assert quoted("plain") == "'plain'"
    assert quoted("it's") == '"it\'s"'
    assert quoted('say "hi"') == "'say \"hi\"'"
    assert quoted("both ' and \"") is None and tag_is("searcher.search_name", "both ' and \"") is None


def test_a_search_is_found_by_any_name_quotes_included(tmp_path):
    from searcher.tracking import open_recorder

    names = ["plain", "it's", 'say "hi"', "both ' and \"", "both"]
    ids = {}
    for name in names:
        recorder = open_recorder(f"sqlite:///{tmp_path / 'm.db'}", "searcher")
        ids[name] = recorder.start_search(name, params={}, tags={})
    for name in names:
        found = find_search(recorder.client, [recorder.experiment_id], name)
        assert found is not None and found.info.run_id == ids[name], name
    assert find_search(recorder.client, [recorder.experiment_id], "nope") is None
