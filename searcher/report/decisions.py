"""The decision log in words: every decision with the numbers compared."""

from __future__ import annotations

import json
import math

from searcher.model.family import Spec
from searcher.search.controller import SearchResult
from searcher.train.metrics import ACCURACY, Metric


def decisions_json(result: SearchResult) -> str:
    return json.dumps([entry.to_dict() for entry in result.decisions], indent=2)


def decisions_markdown(result: SearchResult, search_name: str) -> str:
    lines = [f"# Decision log: {search_name}", ""]
    for stage in result.stages:
        lines += [f"## {stage.stage}", ""]
        lines += [f"- **{entry.decision}**: {entry.reason}" for entry in stage.decisions]
        lines.append("")
    final = result.final
    lines += [
        "## Result",
        "",
        *architecture_table(final.winner.arch),
        "",
        f"{result_words(final.metrics, final.winner_outcomes[0].request.metric if final.winner_outcomes else ACCURACY)} "
        f"over {len(final.trial_decisions)} seeds; {len(result.outcomes)} trials in {result.seconds:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def architecture_table(arch: Spec) -> list[str]:
    """The winner's architecture as a Markdown table: the cnn's blocks and kernels where it has them."""
    columns = {"architecture": arch.describe()}
    if hasattr(arch, "block"):
        columns["block"] = str(arch.block)
    columns["widths"] = str(arch.widths)
    if hasattr(arch, "kernels"):
        columns["kernels"] = str(arch.kernels)
    columns["dropout"] = f"{arch.dropout:.3g}"
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), "| " + " | ".join(columns.values()) + " |"]


def result_words(metrics: dict[str, float], metric: Metric) -> str:
    """"Best-epoch validation accuracy 0.9712 ± 0.0021, test accuracy 0.9688 ± 0.0030" (the metric's name and units)."""
    short, label, nan = metric.short, metric.label, math.nan
    return (
        f"Best-epoch validation {label} {metrics.get(f'val_{short}_mean', nan):.4f} ± {metrics.get(f'val_{short}_std', nan):.4f}, "
        f"test {label} {metrics.get(f'test_{short}', nan):.4f} ± {metrics.get(f'test_{short}_std', nan):.4f}"
    )
