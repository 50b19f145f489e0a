"""A test hook: die at a named point of a step, as a kill there would, to test what the next run makes of it.

``BACKFORTH_CRASH_AT=dedup.after_docs`` (several names: comma-separated) makes :func:`point` SIGKILL the process
when the step reaches that point: no ``finally``, no lineage update, no clean-up, exactly what ``kill -9`` leaves.
Without the variable every point is a no-op. Points are named ``<step>.<where>`` and listed here:

- ``dedup.after_docs``: docs_dedup committed, dedup_signatures not yet.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "BACKFORTH_CRASH_AT"


def point(name: str) -> None:
    """Kill this process now if ``BACKFORTH_CRASH_AT`` names ``name``; otherwise do nothing."""
    wanted = os.environ.get(ENV)
    if not wanted or name not in {p.strip() for p in wanted.split(",")}:
        return
    print(f"[backforth] {ENV}={name}: killing this process", file=sys.stderr, flush=True)
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
