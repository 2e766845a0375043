"""Links into the MLflow UI: the runs table, and one search's runs stage by stage.

The runs table (`/#/experiments/<id>/runs`) shows each search run folded, with
its stages and trials beneath a "+" (MLflow keeps which rows are unfolded in the
browser, not in the link). So that one link shows a whole search at a glance,
each search also gets a *shared view*: MLflow's runs page reads a view state
from the experiment tag `mlflow.sharedViewState.<key>` when the link says
`?viewStateShareKey=<key>`. Ours filters to the search's runs, groups them by
stage in the order they ran and shows the columns a decision rests on.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from searcher.tracking.queries import tag_is
from searcher.tracking.schema import Metrics, Params, Tags

SHARED_VIEW_TAG = "mlflow.sharedViewState."  # the MLflow UI's prefix for shared runs-table views
COLUMNS = (
    f"metrics.`{Metrics.SCORE}`",
    f"metrics.`{Metrics.BEST_VAL_ACC}`",
    f"tags.`{Tags.DECISION}`",
    f"tags.`{Tags.BEHAVIOR}`",
    f"metrics.`{Metrics.EPOCHS}`",
    f"metrics.`{Metrics.TEST_ACC}`",
    f"metrics.`{Metrics.TRANSFER_ACC}`",
    f"params.`{Params.ARCH_WIDTHS}`",
)


def view_key(search_name: str) -> str:
    """URL-safe, stable, distinct per search name."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", search_name).strip("-")[:40]
    return f"searcher-{slug}-{hashlib.sha256(search_name.encode()).hexdigest()[:8]}"


def stage_view(search_name: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "groupBy": {"aggregateFunction": "max", "groupByKeys": [{"mode": "tag", "groupByData": Tags.STAGE}]},
        "selectedColumns": list(COLUMNS),
    }
    search_filter = tag_is(Tags.SEARCH_NAME, search_name)
    if search_filter is not None:  # a name with both quote characters cannot be filtered on: then show every search
        view["searchFilter"] = search_filter
    return view


def save_stage_view(client: Any, experiment_id: str, search_name: str) -> str:
    """Stores the search's stage-by-stage view on the experiment; returns its share key (idempotent)."""
    key = view_key(search_name)
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, json.dumps(stage_view(search_name)))
    return key


def runs_url(base: str, experiment_id: str, share_key: str | None = None) -> str:
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{url}?viewStateShareKey={share_key}" if share_key else url


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page: for a search run, its stages as child runs, its description, report and registered model."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
