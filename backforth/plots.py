"""Small matplotlib helpers for the figures jobs hand to the runner (headless: the Agg backend, no display)."""

from __future__ import annotations

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
