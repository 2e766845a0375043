"""The decision log in words: every decision with the numbers compared."""

from __future__ import annotations

import json

from searcher.model.family import Spec
from searcher.search.controller import SearchResult


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
        f"Best-epoch validation accuracy {final.metrics['val_acc_mean']:.4f} ± {final.metrics['val_acc_std']:.4f}, "
        f"test accuracy {final.metrics['test_acc']:.4f} ± {final.metrics['test_acc_std']:.4f} "
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
