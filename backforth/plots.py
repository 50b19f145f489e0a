"""Small matplotlib helpers for the figures jobs hand to the runner (headless: the Agg backend, no display)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def bar_chart(counts: dict[Any, float], xlabel: str, ylabel: str, title: str, log_y: bool = False) -> Any:
    """A bar chart of ``counts`` (keys in sorted order) as a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=110)
    ax = figure.subplots()
    keys = sorted(counts)
    ax.bar(range(len(keys)), [counts[k] for k in keys], color="#3a6ea5", tick_label=[str(k) for k in keys])
    if any(len(str(k)) > 4 for k in keys):  # reason names: tilt them so they do not overlap
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_y:
        ax.set_yscale("log")
    figure.tight_layout()
    return figure


def funnel_figure(funnel: Sequence[Any]) -> Any:
    """Horizontal bars of a funnel's stages (objects with ``name`` and ``count``), first stage on top."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 0.45 * len(funnel) + 1.2), dpi=110)
    ax = figure.subplots()
    names = [s.name for s in funnel][::-1]
    counts = [s.count for s in funnel][::-1]
    bars = ax.barh(range(len(names)), counts, color="#3a6ea5", tick_label=names)
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=8)
    ax.set(xlabel="rows", title="Funnel: rows reaching each stage")
    ax.margins(x=0.15)
    figure.tight_layout()
    return figure


def grouped_bars(series: dict[str, dict[str, float]], ylabel: str, title: str, refs: dict[str, float] | None = None,
                 ax: Any = None) -> Any:  # fmt: skip
    """Bars of ``{group: {category: value}}``, categories on the x axis; optional reference marks per category.
    Draws on ``ax`` when given (and returns it), else returns a new Figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = None
    if ax is None:
        figure = Figure(figsize=(7, 3.6), dpi=110)
        ax = figure.subplots()
    categories = list(dict.fromkeys(c for values in series.values() for c in values))
    width = 0.8 / max(1, len(series))
    colors = ["#3a6ea5", "#e08a1e", "#4a9a5c", "#9a4a8a"]
    for i, (group, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(categories))]
        ax.bar(xs, [values.get(c, math.nan) for c in categories], width, label=group, color=colors[i % len(colors)])
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(categories))], categories)
    if any(len(c) > 10 for c in categories):
        ax.tick_params(axis="x", labelrotation=25)
    for j, c in enumerate(categories):
        if refs and c in refs:
            left, right = j - width / 2, j + width * (len(series) - 0.5)  # across the category's bars
            ax.plot([left, right], [refs[c], refs[c]], color="black", linestyle="--", linewidth=1.2)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    if figure is not None:
        figure.tight_layout()
    return figure or ax


def lengths_figure(histograms: Mapping[tuple[str, str], Mapping[str, int]], kinds: Mapping[str, str],
                   method: str) -> Any:  # fmt: skip
    """Instruction and response length histograms side by side, as shares of rows: ``histograms`` maps (kind,
    'instruction' | 'response') to {bin label: rows}; ``kinds`` maps each kind to draw, in order, to its label."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8), dpi=110)
    axes = figure.subplots(1, 2)
    for ax, fld in zip(axes, ("instruction", "response"), strict=True):
        series = {}
        for kind, label in kinds.items():
            counts = histograms.get((kind, fld), {})
            total = sum(counts.values())
            series[label] = {b: n / total for b, n in counts.items()} if total else {}
        grouped_bars(series, "share of rows", f"{fld} length (tokens)", ax=ax)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    figure.suptitle(f"Token lengths per kind ({method})", fontsize=9)
    figure.tight_layout()
    return figure


def win_rate_figure(counts: Sequence[int], rate: float, low: float, high: float, title: str) -> Any:
    """A pairwise evaluation at a glance: items won / tied / lost by the candidate, and the win rate with its
    interval against the 0.5 line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.4), dpi=110)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    left.bar(["candidate wins", "tie", "baseline wins"], list(counts), color=["#2a7a4a", "#999999", "#b84040"])
    left.set(ylabel="instructions")
    if rate == rate:  # not NaN: at least one item had a verdict
        right.errorbar([0], [rate], yerr=[[rate - low], [high - rate]], fmt="o", capsize=8, color="#3a6ea5")
    right.axhline(0.5, color="#999999", linestyle="--", linewidth=1)
    right.set(xlim=(-1, 1), ylim=(0, 1), xticks=[], ylabel="win rate (ties ½), 95 % CI")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure
