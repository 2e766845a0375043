"""The decision log in words: every decision with the numbers compared."""

from __future__ import annotations

import json

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
        "| architecture | block | widths | kernels | dropout |",
        "|---|---|---|---|---|",
        f"| {final.winner.arch.describe()} | {final.winner.arch.block} | {final.winner.arch.widths} | "
        f"{final.winner.arch.kernels} | {final.winner.arch.dropout:.3g} |",
        "",
        f"Best-epoch validation accuracy {final.metrics['val_acc_mean']:.4f} ± {final.metrics['val_acc_std']:.4f}, "
        f"test accuracy {final.metrics['test_acc']:.4f} ± {final.metrics['test_acc_std']:.4f} "
        f"over {len(final.trial_decisions)} seeds; {len(result.outcomes)} trials in {result.seconds:.1f} s.",
        "",
    ]
    return "\n".join(lines)
