"""``backforth pipeline``: every step in order, one MLflow parent run with a nested run per step, then a summary.

Each step is the same resumable job the CLI runs alone, so a pipeline that stops (crash, kill, Ctrl-C) is finished by
running it again: finished shards and steps add nothing. ``--set`` keys are routed: ``<job>.<key>=v`` reaches that
job only (as ``job.<key>``), ``job.<key>=v`` reaches every step that has the key, and top-level keys (``data_dir``,
``spark.*``, ``tables.*``, ``mlflow.*``) reach all steps.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from backforth.config import ConfigError, Settings, load_settings, parse_override
from backforth.pipeline_modes import apply_mode
from backforth.registry import get_job, load_jobs, pipeline_steps

log = logging.getLogger("backforth.pipeline")
GLOBAL_KEYS = ("data_dir", "spark", "tables", "mlflow", "env")


def route_overrides(step: str, overrides: list[str], config_cls: type) -> list[str]:
    """The overrides that apply to ``step``, rewritten to the job's own key space."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    jobs = set(load_jobs())
    out = []
    for text in overrides:
        key, _ = parse_override(text)
        head, _, rest = key.partition(".")
        value = text.split("=", 1)[1]
        if head in GLOBAL_KEYS:
            out.append(text)
        elif head == step and rest:
            out.append(f"job.{rest}={value}")
        elif head == "job" and rest.split(".")[0] in fields:
            out.append(text)
        elif head not in jobs and head != "job":
            raise ConfigError(
                f"--set {text}: pipeline keys are <job>.<key> (e.g. backtranslate.limit=10), job.<key> or "
                f"{', '.join(GLOBAL_KEYS)}"
            )
    return out


def run_pipeline(
    env: str, overrides: list[str], conf_dir: Path | None, steps: list[str] | None = None, check_each: bool = False
) -> dict:
    """Run the steps in order inside one parent run; returns per-step outcomes. ``check_each``: the consistency
    check (``backforth check``) after every step; the first step that leaves a problem stops the pipeline."""
    import mlflow

    from backforth.runner import run_job, setup_mlflow
    from backforth.spark import get_spark

    order = pipeline_steps()
    overrides, steps, _ = apply_mode(overrides, steps, order, conf_dir)  # --set pipeline.models=finetuned
    steps = steps or order
    unknown = [s for s in steps if s not in load_jobs()]
    if unknown:
        raise ConfigError(f"unknown pipeline step(s) {unknown} (known: {', '.join(order)})")
    plans = []
    for step in steps:  # resolve and validate every step's config before anything runs
        spec = get_job(step)
        plans.append((spec, load_settings(step, spec.config_cls, env, route_overrides(step, overrides, spec.config_cls),
                                          conf_dir)))  # fmt: skip
    configs = {spec.name: s.job for spec, s in plans}
    for spec, settings in plans:  # e.g. the report follows the export: its kind, its page beside the files
        if spec.plan is not None:
            spec.plan(settings.job, configs)
    base: Settings = plans[0][1]
    setup_mlflow(base)
    spark = get_spark(base)
    outcomes: dict[str, Any] = {}
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}") as parent:
        mlflow.set_tags({"backforth.job": "pipeline", "backforth.steps": ",".join(steps), "backforth.env": env})
        for i, (spec, settings) in enumerate(plans, 1):
            log.info("step %d/%d: %s", i, len(plans), spec.name)
            t0 = time.perf_counter()
            outcomes[spec.name] = run_job(spec, settings, spark)
            mlflow.log_metric(f"step_s.{spec.name}", round(time.perf_counter() - t0, 1))
            if check_each:
                check_after(spark, settings, spec.name)
        mlflow.log_metric("duration_s", round(time.perf_counter() - started, 1))
    return {"run_id": parent.info.run_id, "outcomes": outcomes, "settings": base, "spark": spark, "plans": plans}


class InconsistentError(Exception):
    """``pipeline --check`` found a broken invariant after a step (not a user mistake: a bug or an outside edit)."""


def check_after(spark: Any, settings: Settings, step: str) -> None:
    from backforth.check import check, report

    problems = check(spark, settings)
    if problems:
        raise InconsistentError(f"after {step}: {report(problems)}")
    log.info("check after %s: consistent", step)


def summary(result: dict) -> str:
    """The run's funnel with the reasons per stage (backforth.catalog), where things are, three sample pairs, how to
    open MLflow."""
    from backforth import catalog
    from backforth.masking import mask_url_secrets
    from backforth.runner import tracking_uri
    from backforth.tables import qualify, table_exists

    spark, settings = result["spark"], result["settings"]
    lines = ["", "backforth pipeline: done", ""]
    stages = catalog.funnel(spark, settings)
    width = max((len(s.label) for s in stages), default=10)
    for s in stages:
        why = ", ".join(f"{r} {n}" for r, n in sorted(s.reasons.items(), key=lambda x: -x[1]))
        lines.append(f"  {s.label:<{width}}  {s.kept:>7}" + (f"   dropped: {why}" if why else ""))
    pairs = qualify(settings, "sft_pairs")
    if table_exists(spark, pairs):
        lines += ["", "Three sample pairs (sft_pairs):"]
        rows = spark.table(pairs).where("kind <> 'seed' AND drop_reason IS NULL")
        for r in rows.orderBy("pair_id").limit(3).collect():
            lines.append(f"  Q: {short(r['instruction'], 150)}")
            lines.append(f"  A: {short(r['response'], 300)}")
            lines.append("")
    outcomes = result["outcomes"]
    if "export" in outcomes and outcomes["export"].tags.get("backforth.export_dir"):
        m = outcomes["export"].metrics
        mix = f"{int(m.get('pairs_exported', 0))} generated + {int(m.get('seed_pairs_exported', 0))} seed pairs; "
        lines.append(
            f"Files: {outcomes['export'].tags['backforth.export_dir']}/ ({mix}jsonl/, parquet/, README.md dataset card)"
        )
    if "report" in outcomes and outcomes["report"].tags.get("backforth.report_html"):
        path = outcomes["report"].tags["backforth.report_html"]
        lines.append(f"Report: {path} (one HTML page, opens offline; also in the report step's run)")
    uri = mask_url_secrets(tracking_uri(settings))
    lines += [
        f"Tables: schema '{settings.tables.schema}' in {settings.data_path / 'warehouse'} "
        '(backforth sql "SELECT ... FROM sft_pairs"; lineage: backforth sql "SELECT * FROM step_runs")',
        f"MLflow: run {result['run_id']} (one nested run per step); mlflow ui --backend-store-uri {uri} --port 5000",
    ]
    notes = {
        p.note
        for spec, s in result["plans"]
        if dataclasses.is_dataclass(s.job) and hasattr(s.job, "model")
        for p in [profile_or_none(s.job.model, getattr(s.job, "model_options", None))]
        if p is not None and p.note
    }
    lines += [f"Note: {n}" for n in sorted(notes)]
    return "\n".join(lines)


def profile_or_none(name: str, options: Any = None) -> Any:
    """The model profile ``name``, or None where it cannot be loaded (a summary must not fail on it)."""
    from backforth.engines import load_profile

    try:
        return load_profile(name, options)
    except ConfigError:
        return None


def short(text: str | None, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"
