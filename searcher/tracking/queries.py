"""Finding runs in the store: filter strings with safely quoted values, every page of a result, a search by name.

MLflow's filter syntax has no escape character: a value is quoted with single
quotes, or with double quotes when it holds a single quote, and a value holding
both cannot be written at all. `quoted` says so (None), and `find_search` then
asks for every search run and compares the names here.
"""

from __future__ import annotations

from typing import Any

from searcher.tracking.schema import Roles, Tags


def quoted(value: str) -> str | None:
    """`value` as a filter-string literal; None when it holds both quote characters."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def tag_is(tag: str, value: str) -> str | None:
    """The filter clause `tag = value` (None: not expressible, see `quoted`)."""
    literal = quoted(value)
    return f"tags.`{tag}` = {literal}" if literal is not None else None


def all_runs(client: Any, experiment_ids: list[str], query: str) -> list[Any]:
    """Every run matching `query`, through all result pages, in the order they started."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda run: run.info.start_time)


SEARCH_RUNS = f"tags.`{Tags.ROLE}` = '{Roles.SEARCH}'"


def find_search(client: Any, experiment_ids: list[str], name: str) -> Any | None:
    """The most recently started search run named `name`, or None."""
    by_name = tag_is(Tags.SEARCH_NAME, name)
    found = all_runs(client, experiment_ids, f"{SEARCH_RUNS} and {by_name}" if by_name else SEARCH_RUNS) if experiment_ids else []
    found = [run for run in found if run.data.tags.get(Tags.SEARCH_NAME) == name]
    return max(found, key=lambda run: run.info.start_time) if found else None


def latest_search(client: Any, experiment_id: str) -> Any | None:
    """The most recently started search run of the experiment, or None."""
    runs = client.search_runs([experiment_id], SEARCH_RUNS, max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def children(client: Any, experiment_id: str, parent_id: str) -> list[Any]:
    """The runs whose parent is `parent_id`, in the order they started."""
    return all_runs(client, [experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def descendants(client: Any, experiment_id: str, search_run_id: str) -> list[Any]:
    """A search's stage and trial runs, in the order they started."""
    return all_runs(client, [experiment_id], f"tags.`{Tags.SEARCH_RUN_ID}` = '{search_run_id}'")
