"""One self-contained HTML page for the dataset report: inline CSS, PNG figures as base64 data URIs, HTML tables.

Nothing on the page points outside it (no scripts, fonts, style sheets or images by URL), so it opens offline and can
be mailed or attached to a run as it is. The page's prose comes from a template file read by ``Prose``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d2430;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccd3dd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccd3dd;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:.3em}
.note{color:#4a5566;font-size:.9em}.statement{background:#fff6e0;border-left:4px solid #e0a400;padding:.6em 1em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #e1e6ee}figcaption{color:#4a5566;font-size:.9em}
td.text{max-width:26em;white-space:pre-wrap;font-size:.88em}
.warning{background:#fde8e8;border-left:4px solid #c62828;padding:.6em 1em;font-weight:600}
"""


@dataclass
class Table:
    """A table on the page: a caption, column names, rows of cells (numbers are right-aligned), an optional note."""

    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""
    text_columns: Sequence[str] = ()  # long-text columns: wrapped, smaller type


@dataclass
class Section:
    """A heading with paragraphs, tables and the names of the figures it shows (keys of the page's figures)."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    figures: Sequence[str] = ()
    anchor: str = ""
    warnings: Sequence[str] = ()  # shown highlighted under the heading (e.g. too many outputs cut at a token cap)


@dataclass
class Page:
    title: str
    statement: str  # which model produced the data and what the numbers are worth: shown first, highlighted
    sections: Sequence[Section]
    meta: Mapping[str, str] = field(default_factory=dict)  # run, step versions, settings: a small table at the top


class Prose:
    """A page's text kept out of the code, read from a template file of blocks, each headed by a ``[key]`` line.

    A block's paragraphs are separated by blank lines and the lines of one paragraph are joined with single spaces
    (so the file can wrap freely); ``$name`` and ``${name}`` are filled in with string.Template (``$$`` is a dollar
    sign; a value left out is an error). Lines starting with ``#`` are comments."""

    def __init__(self, blocks: Mapping[str, Sequence[str]]) -> None:
        self.blocks = {key: list(paragraphs) for key, paragraphs in blocks.items()}

    @classmethod
    def parse(cls, text: str) -> Prose:
        blocks: dict[str, list[str]] = {}
        key, lines = None, []
        for line in [*text.splitlines(), ""]:
            line = line.strip()
            if line.startswith("#"):
                continue
            if key is not None and lines and (not line or (line.startswith("[") and line.endswith("]"))):
                blocks[key].append(" ".join(lines))  # a paragraph ends at a blank line or the next key
                lines = []
            if line.startswith("[") and line.endswith("]"):
                key = line[1:-1].strip()
                if key in blocks:
                    raise ValueError(f"prose block [{key}] appears twice")
                blocks[key] = []
            elif line:
                if key is None:
                    raise ValueError(f"prose text before the first [key]: {line[:40]!r}")
                lines.append(line)
        return cls(blocks)

    @classmethod
    def load(cls, path: str | Path) -> Prose:
        return cls.parse(Path(path).read_text(encoding="utf-8"))

    def paragraphs(self, key: str, **values: Any) -> list[str]:
        """The paragraphs of block ``key`` with ``values`` filled in."""
        if key not in self.blocks:
            raise KeyError(f"no prose block [{key}]")
        return [string.Template(p).substitute(values) for p in self.blocks[key]]

    def __call__(self, key: str, **values: Any) -> str:
        """Block ``key`` as one string (a one-paragraph block: a title, a caption, a sentence)."""
        paragraphs = self.paragraphs(key, **values)
        if len(paragraphs) != 1:
            raise ValueError(f"prose block [{key}] has {len(paragraphs)} paragraphs, not one")
        return paragraphs[0]


def figure_png(figure: Any) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def cell(value: Any) -> str:
    """A value as table text: floats with up to 4 significant digits, NaN/None as 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def render_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for name, value in zip(table.columns, row, strict=False):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            css = ' class="num"' if numeric else (' class="text"' if name in table.text_columns else "")
            cells.append(f"<td{css}>{html.escape(cell(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f"<table><caption>{html.escape(table.caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note}"
    )


def render_figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    label = html.escape(name)
    return (
        f'<figure id="fig-{label}"><img alt="{label}" src="data:image/png;base64,{data}">'
        f"<figcaption>{label}</figcaption></figure>"
    )


def render_page(page: Page, figures: Mapping[str, bytes]) -> str:
    """The whole page. A section naming a figure that is not in ``figures`` is an error: the page must show every
    figure it promises."""
    missing = [f for s in page.sections for f in s.figures if f not in figures]
    if missing:
        raise KeyError(f"report figures promised but not rendered: {', '.join(missing)}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(page.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(page.title)}</h1>",
        f'<p class="statement">{html.escape(page.statement)}</p>',
    ]
    if page.meta:
        parts.append(render_table(Table("This report", ["item", "value"], [[k, v] for k, v in page.meta.items()])))
    toc = "".join(f'<li><a href="#{_anchor(s)}">{html.escape(s.title)}</a></li>' for s in page.sections)
    parts.append(f"<ul>{toc}</ul>")
    for section in page.sections:
        parts.append(f'<h2 id="{_anchor(section)}">{html.escape(section.title)}</h2>')
        parts += [f'<p class="warning">{html.escape(w)}</p>' for w in section.warnings]
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs if p]
        parts += [render_table(t) for t in section.tables]
        parts += [render_figure(name, figures[name]) for name in section.figures]
    parts.append("</body></html>")
    return "\n".join(parts)


def _anchor(section: Section) -> str:
    return html.escape(section.anchor or "".join(ch if ch.isalnum() else "-" for ch in section.title.lower()))
