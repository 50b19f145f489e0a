"""A Spark task that failed on every attempt, said in one line.

When a UDF raises on an executor (an engine that crashes, a model that cannot load), Spark retries the task (on a
laptop too: the default master is ``local[2,3]``, three attempts) and then fails the job with the Python worker's
traceback inside a Java one: hundreds of lines whose only useful part is the last line of the Python error. The CLI
prints that line, how many attempts were made, and that committed work is kept.
"""

from __future__ import annotations

import re

PYTHON_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$", re.MULTILINE)
WORKER = "An exception was thrown from the Python worker"


def task_failure(exc: BaseException) -> str | None:
    """The one-line reason of a job that Spark aborted because a Python task kept failing; None for anything else
    (which is a bug and keeps its trace)."""
    text = str(exc)
    if WORKER not in text and "PythonException" not in type(exc).__name__:
        return None
    worker = text[text.find(WORKER) :] if WORKER in text else text
    errors = [m for m in PYTHON_ERROR.finditer(worker) if not m.group(1).startswith(("py4j", "org.", "java."))]
    if not errors:
        return None
    name, message = errors[-1].group(1).rsplit(".", 1)[-1], errors[-1].group(2).strip()
    return (  # Spark aborts a job only once a task has used all its attempts
        f"a Spark task failed on every attempt: {name}: {message[:300]} (what earlier tasks committed is kept; run "
        "the same command again to resume)"
    )
