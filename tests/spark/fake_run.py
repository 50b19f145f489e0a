"""Settings of the fake-engine runs the review tests share (the `answered` fixture in conftest.py builds them)."""

from __future__ import annotations


def fake(log_dir, **extra) -> dict:
    """model_options of the fake engine: its call log in ``log_dir``, and e.g. ``reply=...``."""
    return {"options": {"log_dir": str(log_dir), **extra}}


FILTER_TOP_HALF = {"mode": "top_fraction", "fraction": 0.5}
REWRITE_REPLY = "[RES]A careful answer that is long enough to keep.[/RES]"
