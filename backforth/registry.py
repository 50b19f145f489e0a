"""The job registry: ``@job("name", config=Cls)`` makes a function a CLI subcommand and a pipeline step."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobResult:
    """What a job may return instead of a plain metrics dict: metrics plus figures (file name → matplotlib Figure),
    tags, tables (column-oriented, for ``mlflow.log_table``) and files that the runner logs to MLflow. Jobs never
    log to MLflow themselves (prompt registration aside, through backforth.tracking)."""

    metrics: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # run tags: step version, model, prompt versions, notes
    tables: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # name → columns: tables/<name>.json
    artifacts: dict[str, str] = field(default_factory=dict)  # local file → artifact folder of the run ("" = root)
    lineage: Any = None  # a backforth.lineage.StepRun with what the job knows: step_version, inputs, model, rows


JobFn = Callable[[Any, Any], "dict[str, float] | JobResult"]


@dataclass(frozen=True)
class JobSpec:
    """One registered job: its name, config dataclass, the function that does the I/O, and a one-line summary."""

    name: str
    config_cls: type
    fn: JobFn
    description: str | None = None  # one line; default: the first line of the job module's docstring
    plan: Callable[[Any, dict[str, Any]], None] | None = None  # in a pipeline: adjust own config from the others'

    @property
    def summary(self) -> str:
        """What ``backforth --help`` shows for the job."""
        if self.description:
            return self.description
        doc = sys.modules[self.fn.__module__].__doc__ or self.fn.__doc__ or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


JOBS: dict[str, JobSpec] = {}


def job(
    name: str, config: type, description: str | None = None, plan: Callable[[Any, dict[str, Any]], None] | None = None
) -> Callable[[JobFn], JobFn]:
    """Register ``fn(spark, settings) -> metrics`` as job ``name`` configured by dataclass ``config``."""

    def register(fn: JobFn) -> JobFn:
        existing = JOBS.get(name)
        if existing and existing.fn.__module__ != fn.__module__:
            raise ValueError(f"job '{name}' registered twice: {existing.fn.__module__} and {fn.__module__}")
        JOBS[name] = JobSpec(name=name, config_cls=config, fn=fn, description=description, plan=plan)
        return fn

    return register


JOBS_PACKAGE = "backforth.jobs"  # loaded by name: the core never imports the steps statically


def load_jobs() -> dict[str, JobSpec]:
    """Import every module of the jobs package so their decorators run; returns the registry."""
    package = importlib.import_module(JOBS_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{JOBS_PACKAGE}.{info.name}")
    return JOBS


def pipeline_steps() -> list[str]:
    """The order ``backforth pipeline`` runs the steps in, as the jobs package declares it (``PIPELINE``)."""
    load_jobs()
    return list(importlib.import_module(JOBS_PACKAGE).PIPELINE)


def get_job(name: str) -> JobSpec:
    """The registered job ``name``, or an error listing the known ones."""
    jobs = load_jobs()
    if name not in jobs:
        raise KeyError(f"unknown job '{name}' (known jobs: {', '.join(sorted(jobs))})")
    return jobs[name]
