"""How every report figure looks: page size, HiDPI resolution, a colour-blind-safe palette, legends and labels.

A figure is drawn for a page: WIDTH x DISPLAY_DPI = 1000 CSS pixels wide,
rendered at SCALE x that resolution so it stays sharp on HiDPI screens; report.html
shows it at its display width (the PNG's width / SCALE). Colours are Okabe and Ito's
palette, told apart with every common colour-vision deficiency, and decisions also
differ by marker shape. Legends sit outside the data, and point labels are placed
where they neither overlap each other nor leave the axes (`place_labels`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

DISPLAY_DPI = 100  # CSS pixels per inch of figure: a 10-inch figure is shown 1000 px wide
SCALE = 2  # rendered at 2x: 2000 px wide, crisp on HiDPI screens
DPI = DISPLAY_DPI * SCALE
WIDTH = 10.0  # inches: every page figure shares this width

# Okabe & Ito (2008), "Color Universal Design": distinct for protanopia, deuteranopia and tritanopia.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
GREY = "#8C8C8C"
STAGE_COLORS = {
    "baseline": OKABE_ITO["black"],
    "width": OKABE_ITO["orange"],
    "depth": OKABE_ITO["sky blue"],
    "regularization": OKABE_ITO["bluish green"],
    "final": OKABE_ITO["vermillion"],
    "transfer": OKABE_ITO["reddish purple"],
}
# decision -> (colour, marker): shape repeats what colour says
DECISIONS = {
    "selected": (OKABE_ITO["blue"], "o"),
    "rejected": (OKABE_ITO["vermillion"], "s"),
    "pruned": (OKABE_ITO["orange"], "X"),
    "failed": (OKABE_ITO["black"], "x"),
    "": (GREY, "o"),
}

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "figure.titlesize": 12.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}


@dataclass
class Plot:
    name: str  # file name without .png, e.g. "stage-depth"
    title: str  # drawn on the figure and stored in the PNG's Title chunk
    figure: Any  # matplotlib.figure.Figure

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.png"
        self.figure.savefig(path, format="png", dpi=self.figure.dpi, metadata={"Title": self.title, "Software": "searcher"})
        return path


@contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # matplotlib types the keys as literals
        yield


def styled(make: Callable[..., Plot]) -> Callable[..., Plot]:
    """Draws `make`'s figure with the report's STYLE (font sizes are read when artists are created)."""

    @wraps(make)
    def drawn(*args: Any, **kwargs: Any) -> Plot:
        with style():
            return make(*args, **kwargs)

    return drawn


def new_figure(height: float, columns: int = 1, widths: tuple[float, ...] | None = None, dpi: int = DPI) -> tuple[Any, list[Any]]:
    """A page-wide figure whose layout makes room for every label and for legends outside the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(WIDTH, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(w_pad=0.08, h_pad=0.08)  # type: ignore[union-attr, call-arg]  # the constrained engine takes them
    axes = figure.subplots(1, columns, squeeze=False, width_ratios=widths)[0]
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(6))
        ax.yaxis.set_major_locator(MaxNLocator(6))
    return figure, list(axes)


def titles(figure: Any, title: str, ax: Any = None, subtitle: str = "") -> None:
    """The figure's title, left-aligned (clear of the legend at the right), and a smaller note over `ax`."""
    figure.suptitle(textwrap.fill(title, 70), x=0.01, ha="left")
    if subtitle:
        note(ax, subtitle)


def note(ax: Any, text: str, characters: int = 95) -> None:
    """A smaller grey line over `ax`, wrapped to `characters` (95 fill a page-wide axes)."""
    ax.set_title(textwrap.fill(text, characters), loc="left", fontsize=9.5, color="#444444")


def legend_outside(figure: Any, handles: list[Any]) -> None:
    """One legend for the figure, right of the axes, where it cannot hide data."""
    if handles:
        figure.legend(handles=handles, loc="outside right upper")


def offset(ax: Any, points: float) -> Any:
    """ax's data coordinates shifted right by `points`: seeds of one candidate side by side, not on top of each other."""
    from matplotlib.transforms import offset_copy

    return offset_copy(ax.transData, fig=ax.figure, x=points, y=0, units="points")


def decision_handle(decision: str, label: str | None = None, size: float = 8) -> Any:
    from matplotlib.lines import Line2D

    color, marker = DECISIONS.get(decision, DECISIONS[""])
    return Line2D([], [], marker=marker, ls="", color=color, markersize=size, label=label or decision)


@dataclass(frozen=True)
class Label:
    x: float  # data coordinates of the point it names
    y: float
    text: str


# offsets (points) tried in turn: right/left of the point, then further up and down
OFFSETS = [(7, 6), (-7, 6), (7, -8), (-7, -8), (7, 20), (-7, 20), (7, -22), (-7, -22), (0, 34), (0, -36)]


def place_labels(figure: Any, ax: Any, labels: list[Label], avoid: Sequence[tuple[float, float, float]] = (), fontsize: float = 9.5) -> list[Any]:
    """Annotate points where no label overlaps another, covers a point of `avoid` or leaves the axes.

    `avoid`: the markers drawn, as (x, y) in data coordinates and a shift right in points (see `offset`).
    Labels of one point are merged. The layout is fixed first (labels take no part in it), then
    each label takes the first offset whose box stays inside the axes and clear of the labels
    already placed and of the points. A label that fits nowhere is left out rather than drawn over
    another: every point is also in the report's tables.
    """
    if not labels:
        return []  # no layout pass needed
    merged: dict[tuple[float, float], list[str]] = {}
    for label in labels:
        merged.setdefault((label.x, label.y), []).append(label.text)
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = [ax.transData.transform((x, y)) + (shift * figure.dpi / 72, 0) for x, y, shift in avoid]  # display pixels
    placed: list[Any] = []
    boxes: list[Any] = []
    for (x, y), texts in merged.items():
        for dx, dy in OFFSETS:
            annotation = ax.annotate(
                "\n".join(texts), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top",
                annotation_clip=False,
            )
            annotation.set_in_layout(False)
            box = annotation.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            covers = box.padded(5 * figure.dpi / 72)  # a marker's radius around each point
            clear = not any(box.overlaps(other) for other in boxes) and not any(covers.contains(px, py) for px, py in points)
            if inside and clear:
                placed.append(annotation)
                boxes.append(box)
                break
            annotation.remove()
    return placed


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_") or "run"
