"""The report's content as a few block types, written out as Markdown or as one self-contained HTML file.

Both files come from the same blocks, so they never disagree; the HTML embeds
its figures as base64 PNG (it can be mailed or opened from an artifact store),
the Markdown links them under figures/.
"""

from __future__ import annotations

import base64
import html
import struct
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # plain text; **bold** is the only markup used


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    path: Path  # the PNG on disk
    title: str
    scale: int = 1  # PNG pixels per CSS pixel: a 2x figure is shown at half its width, sharp on HiDPI screens


@dataclass(frozen=True)
class Code:
    text: str
    language: str = "python"


@dataclass(frozen=True)
class Columns:
    """Blocks side by side in HTML, one after the other in Markdown (e.g. two rankings)."""

    parts: tuple[tuple, ...] = field(default_factory=tuple)


Block = Heading | Paragraph | Bullets | Table | Figure | Code | Columns


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], figures_from: Path) -> str:
    """Markdown; figures linked relative to `figures_from` (the folder report.md is written to)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(map(_md_cell, block.header)) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.title}]({block.path.relative_to(figures_from).as_posix()})", ""]
        elif isinstance(block, Code):
            out += [f"```{block.language}", block.text.rstrip(), "```", ""]
        elif isinstance(block, Columns):
            out.append(to_markdown([b for part in block.parts for b in part], figures_from))
    return "\n".join(out)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first, at byte 16)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def _inline(text: str) -> str:
    """Escape, then turn **x** into <b>x</b>."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _html_blocks(blocks: list[Block] | tuple) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            png = block.path.read_bytes()
            width, height = (n // block.scale for n in png_size(png))
            data = base64.b64encode(png).decode()
            title = html.escape(block.title)
            out.append(
                f'<figure><img alt="{title}" width="{width}" height="{height}" src="data:image/png;base64,{data}">'
                f"<figcaption>{title}</figcaption></figure>"
            )
        elif isinstance(block, Code):
            out.append(f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>")
        elif isinstance(block, Columns):
            out.append('<div class="columns">' + "".join(f"<div>{''.join(_html_blocks(part))}</div>" for part in block.parts) + "</div>")
    return out


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; } figcaption { color: #555; font-size: 12px; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
.columns { display: flex; gap: 2em; flex-wrap: wrap; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    body = "\n".join(_html_blocks(blocks))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
