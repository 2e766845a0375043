"""What the report says, from a SearchRecord: summary, decision log, result, transfer rankings, reload recipe."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from pathlib import Path

from searcher.data.registry import TABLES
from searcher.report.candidates import candidates
from searcher.report.canvas import SCALE
from searcher.report.document import Block, Bullets, Code, Columns, Figure, Heading, Paragraph, Table
from searcher.tracking.records import SearchRecord, StageRecord
from searcher.tracking.schema import Metrics, Params, Tags
from searcher.uris import redact


def num(value: object, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "failed" if not math.isfinite(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def stage_score(stage: StageRecord) -> str:
    return num(stage.score)


def stage_verdict(stage: StageRecord) -> str:
    last = stage.decisions[-1]["reason"] if stage.decisions else ("not finished" if stage.status != "FINISHED" else "")
    return last


def header(search: SearchRecord) -> list[Block]:
    started = datetime.datetime.fromtimestamp(search.started_ms / 1000).strftime("%Y-%m-%d %H:%M")
    seconds = search.seconds
    facts = [
        f"dataset **{search.tags.get(Tags.DATASET, '?')}**",
        f"preset {search.tags.get(Tags.PRESET, '?')}",
        f"device {search.tags.get(Tags.DEVICE, '?')}",
        f"{len([t for t in search.trials if t.stage != 'transfer'])} trials",
        f"{seconds:.1f} s" if seconds is not None else "still running",
        f"started {started}",
        f"run status {search.status}",
    ]
    classes = search.params.get("dataset.classes")
    if classes and classes != "None":
        facts.insert(1, f"classes {classes}")
    return [Heading(f"searcher report: search {search.name}", 1), Paragraph(" · ".join(facts))]


def result(search: SearchRecord) -> list[Block]:
    m = search.metrics
    final = search.stage("final")
    blocks: list[Block] = [Heading("Result")]
    if Metrics.TEST_ACC in m:
        seeds = len(final.trials) if final else 0
        short, label = search.metric.short, search.metric.label
        blocks.append(
            Paragraph(
                f"**{search.tags.get(Tags.FINAL_ARCH, '')}**: best-epoch validation {label} {num(m.get(f'val_{short}_mean'))} ± {num(m.get(f'val_{short}_std'))}, "
                f"**test {label} {num(m.get(f'test_{short}'))} ± {num(m.get(f'test_{short}_std'))}** (mean ± std over {seeds} seeds; "
                "the test split was read only here)."
            )
        )
    else:
        blocks.append(Paragraph("The search has no final metrics yet (it did not finish)."))
    arch = final.winner_arch if final and final.winner_arch else None
    if arch:
        if "layers" in arch:  # the cnn's blocks
            input_size = search.input.get("size")
            rows: list[tuple[str, ...]] = []
            size = input_size
            for index, layer in enumerate(arch["layers"], 1):
                after = size // 2 if (size and layer["halves"]) else size
                rows.append((str(index), arch["block"], str(layer["width"]), f"{layer['kernel']}x{layer['kernel']}", "yes" if layer["halves"] else "no", f"{after}x{after}" if after else "-"))
                size = after
            blocks.append(Table(("layer", "block", "width", "kernel", "halves resolution", "output size"), tuple(rows)))
        else:  # a family of layers of a width each
            family = str(search.input.get("family", {}).get("_target_", "")).rpartition(".")[2]
            rows = [(str(index), family, str(width)) for index, width in enumerate(arch.get("widths", ()), 1)]
            blocks.append(Table(("layer", "family", "width"), tuple(rows)))
        trial = final.trials[0] if final and final.trials else None
        settings = []
        if trial:
            for name in ("optimizer", "lr", "batch_size", "weight_decay", "label_smoothing", "augment"):
                if Params.TRAIN + name in trial.params:
                    settings.append(f"{name} {trial.params[Params.TRAIN + name]}")
        where = "after the last layer" if "widths" in arch else "after global average pooling"  # (a LayerStack, or the cnn's blocks)
        settings.insert(0, f"dropout {arch['dropout']:.3g} before the linear head ({where})")
        blocks.append(Paragraph("Training: " + ", ".join(settings) + "."))
    return blocks


def summary(search: SearchRecord) -> list[Block]:
    rows = []
    for stage in search.stages:
        rows.append((stage.title, stage.winner or "-", stage_score(stage), str(len(stage.trials)), stage_verdict(stage)))
    blocks: list[Block] = [Heading("Stages")]
    if search.metric.name != "accuracy":  # the scores are not the metric the user reads: say what they are
        blocks.append(Paragraph(f"Scores here and in the decision log: validation {search.metric.score_words} (higher is better), the best 3-epoch mean."))
    return blocks + [Table(("stage", "winner", "score", "trials", "decision"), tuple(rows))]


def decision_log(search: SearchRecord) -> list[Block]:
    blocks: list[Block] = [Heading("Decision log")]
    for stage in search.stages:
        blocks.append(Heading(stage.title, 3))
        items = tuple(f"**{d['decision']}**: {d['reason']}" for d in stage.decisions) or ("(no decisions recorded)",)
        blocks.append(Bullets(items))
    return blocks


def transfer(search: SearchRecord) -> list[Block]:
    stage = search.stage("transfer")
    if stage is None:
        return []
    rows = [d["numbers"] for d in stage.decisions if d["decision"] == "probed"]
    verdict = next((d["reason"] for d in stage.decisions if d["decision"] in ("selected", "skipped")), "")
    blocks: list[Block] = [Heading("Transfer: best in validation vs best for transfer")]
    if not rows:
        return blocks + [Paragraph(verdict or "No candidate was probed.")]

    def table(key: str, rank: str, title: str) -> tuple:
        ordered = sorted(rows, key=lambda r: r[rank])
        body = tuple((str(r[rank]), r["source"], r["source_stage"], num(r[key]), str(r["epochs"])) for r in ordered)
        return (Heading(title, 3), Table(("#", "candidate", "stage", key, "epochs"), body))

    blocks.append(Paragraph(f"**Verdict**: {verdict}."))
    blocks.append(Columns((table("val_acc", "val_rank", "ranked by validation accuracy"), table("transfer_acc", "transfer_rank", "ranked by transfer accuracy"))))
    blocks.append(
        Paragraph(
            "Transfer accuracy: a linear head trained on each candidate's frozen, pooled features on the target's training split, "
            "scored on the target's validation split. Candidates: the best distinct networks by validation plus the "
            "longest-trained others (epochs behind the kept weights)."
        )
    )
    return blocks


def reload(search: SearchRecord) -> list[Block]:
    blocks: list[Block] = [Heading("Reload the model")]
    if search.model is None:
        return blocks + [Paragraph("No model was logged (the search did not finish).")]
    shape = search.input
    kind = input_kind(shape.get("input_shape") or (), search.tags.get(Tags.DATASET) in TABLES)
    regression = search.metric.task == "regression"
    registered = (
        f"It is registered as **{search.model.registered_name}** version {search.model.version} "
        f"(tagged searcher.search_name={search.name})."
        if search.model.registered_name
        else ""
    )
    blocks.append(Paragraph(f"The final model (best validation seed of the final stage) is logged on the search run. {registered}"))
    blocks.append(
        Code(
            "import searcher, torch\n"
            f'model = searcher.load_model("{search.model.uri}",\n'
            f'                            tracking_uri="{redact(search.tracking_uri)}")  # add your password back if the store needs one\n'
            + input_lines(kind, shape)
            + "with torch.no_grad():\n"
            + prediction_line(kind, regression)
        )
    )
    served = "the rows model.rows(frame) makes, as a float32 array," if kind == "table" else f"the same {TAKES[kind]}"
    blocks.append(
        Paragraph(
            "It is an nn.Module in eval mode, rebuilt from its architecture and a weights-only state dict. "
            f"mlflow.pyfunc.load_model (and mlflow models serve) take {served} and return {gives(regression)}."
        )
    )
    return blocks


COMPARED_STAGES = ("width", "depth", "regularization")  # stages whose figure names only the chosen candidates


def candidate_table(search: SearchRecord, stage: str) -> list[Block]:
    """Every candidate the stage compared, with its seeds: what the figure does not name."""
    rows = tuple(
        (c.name, c.decision or "-", num(c.score), str(len(c.scores)), ", ".join(num(v) for v in c.scores))
        for c in candidates(search.trials, stage)
    )
    if not rows:
        return []
    return [Table(("candidate", "decision", "score (mean)", "seeds", "score per seed"), rows)]


def figures(search: SearchRecord, paths: dict[str, tuple[Path, str]]) -> list[Block]:
    """The overview, then each stage's story (names from plots.py), with the candidates it compared."""
    blocks: list[Block] = [Heading("Figures")]
    for name, (path, title) in paths.items():
        blocks.append(Figure(path, title, SCALE))
        stage = name.removeprefix("stage-")
        if stage in COMPARED_STAGES:
            blocks += candidate_table(search, stage)
    return blocks


def report_blocks(search: SearchRecord, figure_paths: dict[str, tuple[Path, str]]) -> list[Block]:
    return (
        header(search)
        + result(search)
        + summary(search)
        + transfer(search)
        + figures(search, figure_paths)
        + decision_log(search)
        + reload(search)
    )


def description_blocks(search: SearchRecord) -> list[Block]:
    """The search run's description in the MLflow UI: the result and the stages at a glance."""
    sentence = [block for block in result(search) if isinstance(block, Paragraph)][:1]
    return (
        sentence
        + summary(search)
        + transfer(search)
        + [Paragraph("The full report, with the figures and the decision log: **report.html** under Artifacts.")]
    )


TAKES = {  # what the final model takes, by kind (input_kind), in the summary's and the report's words
    "images": "uint8 images",
    "table": "float32 rows (model.rows(frame) makes them from the file's columns)",
    "rows": "float32 rows",
    "sequences": "float32 one-hot sequences",
}


def input_kind(input_shape: Sequence[int], table: bool) -> str:
    """images (C, H, W), sequences (length, vocabulary) of one-hot tokens, or feature rows (F,): a table's (`table`:
    model.rows(frame) encodes its file's columns) or an array's. A search recorded before input shapes were: images."""
    if len(input_shape) == 1:
        return "table" if table else "rows"
    return "sequences" if len(input_shape) == 2 else "images"


def gives(regression: bool) -> str:
    return "predictions in the target's units" if regression else "logits"


def model_words(kind: str, input_shape: Sequence[int], regression: bool) -> str:
    """What the final model takes and gives, as the summary's last line says it: "float32 one-hot sequences (N, 24, 9)
    in, logits out" (a table's rows: how to make them, not their width)."""
    shape = f" (N, {', '.join(map(str, input_shape))})" if kind in ("rows", "sequences") else ""
    return f"{TAKES[kind]}{shape} in, {gives(regression)} out"


def input_lines(kind: str, shape: dict) -> str:
    """The reload example's inputs: a table's rows made from a DataFrame; other inputs, a comment saying what they are."""
    size: Sequence[int] = shape.get("input_shape") or ()
    if kind == "table":
        return (
            "# frame: a pandas DataFrame with the file's columns (other columns, the target's among them, are ignored)\n"
            f"rows = model.rows(frame)  # float32 (N, {size[0]}) named by model.feature_names, encoded as the search encoded the file\n"
        )
    if kind == "rows":
        return f"# rows: float32 tensor (N, {size[0]}) of features in their own units; the model standardises them itself\n"
    if kind == "sequences":
        return f"# rows: float32 tensor (N, {size[0]}, {size[1]}), each token one-hot, as searcher's sequences store them\n"
    return (
        f"# images: uint8 tensor (N, {shape.get('channels', 'C')}, {shape.get('size', 'H')}, {shape.get('size', 'W')}) on the 0-255 scale, "
        "as searcher's datasets store them; the model normalises them itself\n"
    )


def prediction_line(kind: str, regression: bool) -> str:
    """A regression model returns (N,) values (no classes to pick); a table's classes are its target column's values."""
    inputs = "images" if kind == "images" else "rows"
    if regression:
        return f"    predictions = model({inputs})  # (N,) predictions of the target, in its units\n"
    if kind == "table":
        return f"    predictions = [model.class_names[i] for i in model({inputs}).argmax(1)]  # the target column's values\n"
    return f"    predictions = model({inputs}).argmax(1)  # output i is the dataset's class model.labels[i]\n"
