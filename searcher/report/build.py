"""The report of one search, built from the tracking store alone: figures, report.html, report.md.

The search calls `publish` at its end; `python -m searcher.report` calls it later
on any finished search. Both read the store (tracking/reader.py), draw
(plots.py), write (content.py + document.py) and attach the files to the runs:
the report and the overview and stage figures to the search run, each stage
figure to its stage run, each learning-curve figure to its trial run.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from searcher.report import curves, plots
from searcher.report.canvas import slug
from searcher.report.content import description_blocks, report_blocks
from searcher.report.document import to_html, to_markdown
from searcher.tracking.records import SearchRecord

TRIAL_PLOT_MIN_SECONDS = 3.0  # auto: a learning-curve figure costs ~20-65 ms, 1-2% of this much of the search's wall


@dataclass
class Built:
    folder: Path
    html: Path
    markdown: Path
    shown: list[Path]  # the figures the documents show: logged beside them on the search run
    stage_figures: dict[str, Path] = field(default_factory=dict)  # stage run id -> PNG
    trial_figures: dict[str, Path] = field(default_factory=dict)  # trial run id -> PNG
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went: trial_plots, stage_plots, documents


def build(search: SearchRecord, folder: Path, trial_plots: bool = True) -> Built:
    """Draw every figure and write both documents under `folder` (figures in folder/figures)."""
    figures_dir = folder / "figures"
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    trial_figures: dict[str, Path] = {}
    names: set[str] = set()
    if trial_plots:
        drawer = curves.TrialFigures()
        for trial in search.trials:
            plot = drawer.draw(trial)
            plot.name = _unique(f"trial-{trial.stage}-{slug(trial.name)}", names)
            trial_figures[trial.run_id] = plot.save(figures_dir / "trials")
    seconds["trial_plots"] = time.perf_counter() - started

    started = time.perf_counter()
    overview = plots.overview_plot(search)
    shown: dict[str, tuple[Path, str]] = {"overview": (overview.save(figures_dir), overview.title)}
    stage_figures: dict[str, Path] = {}
    for stage in search.stages:
        story = plots.stage_plot(stage, search)
        if story is not None:
            stage_figures[stage.run_id] = story.save(figures_dir)
            shown[story.name] = (stage_figures[stage.run_id], story.title)
    final = search.stage("final")
    if final and trial_plots:
        chosen = [t for t in final.trials if t.run_id in trial_figures]
        if chosen:  # drawn again at the report's resolution (the trial runs' copies are 1x)
            curve = curves.trial_plot(max(chosen, key=lambda t: t.val_acc))
            curve.name = "final-curves"
            shown["final-curves"] = (curve.save(figures_dir), curve.title)
    seconds["stage_plots"] = time.perf_counter() - started

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(search, shown)
    markdown = folder / "report.md"
    markdown.write_text(to_markdown(blocks, folder))
    html = folder / "report.html"
    html.write_text(to_html(blocks, f"searcher report: {search.name}"))
    seconds["documents"] = time.perf_counter() - started
    return Built(folder, html, markdown, [path for path, _ in shown.values()], stage_figures, trial_figures, seconds)


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate)
    return candidate


@dataclass(frozen=True)
class Published:
    location: str  # report.html on disk, or its artifact URI when no folder was given
    seconds: dict[str, float]  # read, trial_plots, stage_plots, documents, log


def wants_trial_plots(search: SearchRecord, setting: bool | None) -> bool:
    """report.trial_plots: true/false as set; null (auto) only where the search took enough of its wall time per
    trial for a figure not to matter. Its wall, not its trials' own seconds: the figures are drawn one after another
    once the search is over, however many trials trained side by side (4 trials of 4 s at once on a GPU leave 1 s of
    search per figure)."""
    if setting is not None:
        return setting
    trials = [t for t in search.trials if t.stage != "transfer"]
    seconds = search.seconds
    return bool(trials) and seconds is not None and seconds / len(trials) >= TRIAL_PLOT_MIN_SECONDS


def publish(
    tracking_uri: str, search_run_id: str | None, folder: Path | None, trial_plots: bool | None = None, log: bool = True
) -> Published:
    """Read the search from the store, build its report under `folder` and (with `log`) attach it to the runs."""
    from searcher.tracking.publish import attach, describe, log_report_seconds
    from searcher.tracking.reader import read_search, with_curves
    from searcher.tracking.store import client_for

    if search_run_id is None:
        raise ValueError("no search run to report on")
    started = time.perf_counter()
    client = client_for(tracking_uri)
    search = read_search(client, search_run_id)
    trial_plots = wants_trial_plots(search, trial_plots)
    search = with_curves(client, search, {t.run_id for t in search.trials if trial_plots or t.stage == "baseline"})
    read_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        built = build(search, folder or Path(scratch), trial_plots)
        built.seconds["read"] = read_seconds
        location = str(built.html) if folder is not None else f"{client.get_run(search.run_id).info.artifact_uri}/report.html"
        if log:
            started = time.perf_counter()
            attach(client, search.run_id, [built.html, built.markdown])
            for path in built.shown:  # same relative paths as in report.md, so its links work in the artifact store
                attach(client, search.run_id, [path], path.parent.relative_to(built.folder).as_posix())
            for run_id, path in {**built.stage_figures, **built.trial_figures}.items():
                attach(client, run_id, [path], "figures")
            describe(client, search.run_id, to_markdown(description_blocks(search), built.folder))
            built.seconds["log"] = time.perf_counter() - started
            log_report_seconds(client, search.run_id, sum(built.seconds.values()))
    return Published(location, built.seconds)
