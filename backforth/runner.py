"""Runs one job inside one MLflow run: config, tags, params, metrics and Delta lineage are logged here, not in jobs.

Lineage: every run is one row of ``step_runs`` (backforth.lineage), started before the job and completed after it.
MLflow convention: every ``*_table`` field of a job config names a table the job touches; fields starting with
``input`` are inputs, the others outputs. After the job returns, each table that exists is logged as an MLflow
dataset pinned to its current Delta version (context ``input`` or ``output``), and as a ``table.<field>`` tag.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backforth import __version__, crash, keep
from backforth.config import Settings, config_hash, dump_yaml, flatten, to_dict
from backforth.errors import ConfigError
from backforth.masking import mask_url_secrets, split_userinfo
from backforth.registry import JobResult, JobSpec
from backforth.tables import qualify, schema_name

MAX_PARAMS = 100  # MLflow accepts more, but a wall of params hides the ones people look for
MAX_PARAM_CHARS = 500


@dataclass
class JobOutcome:
    """What the CLI prints after a job: the run, its metrics and the table versions it left."""

    run_id: str
    experiment_id: str
    tracking_uri: str  # as it may be shown: a password in it masked
    metrics: dict[str, float]
    tables: dict[str, int]
    tags: dict[str, str] = dataclasses.field(default_factory=dict)  # the job's own run tags (paths it wrote, ...)
    step_run: str | None = None  # the run's row in step_runs


def tracking_uri(settings: Settings) -> str:
    """MLFLOW_TRACKING_URI, else the config's URI, else a SQLite store in the data folder."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or settings.mlflow.tracking_uri
        or f"sqlite:///{settings.data_path / 'mlflow.db'}"
    )


def without_credentials(uri: str) -> str:
    """The URI to hand MLflow: an HTTP server's credentials (``https://user:pass@host``) move to
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (where those are not set already), which MLflow sends as basic
    auth, so that MLflow never prints them ("View run at ..."), quotes them in a request error, or hands them on.
    Spark's Python workers started after this inherit them; on a cluster, set them for the executors too
    (``spark.executorEnv.MLFLOW_TRACKING_PASSWORD``). Other stores (a database URL) keep their URI as it is."""
    if not uri.lower().startswith(("http://", "https://")):
        return uri
    clean, user, password = split_userinfo(uri)
    if user:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
    if password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", password)
    return clean


def quiet_mlflow() -> None:
    """MLflow's import configures its loggers; keep store migrations and Databricks-auth probes out of job output."""
    import logging
    import warnings

    for name in ("mlflow.store.db.utils", "mlflow.utils.databricks_utils", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent missing values.*")


def refuse_driver_local_store(settings: Settings, uri: str) -> None:
    """On a cluster's driver (spark-submit, Databricks) a SQLite or file store lives in scratch space that goes away
    with the driver: refuse it, in one line, unless ``mlflow.allow_local_store`` says the user wants that."""
    from backforth.spark import running_on_cluster

    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri and uri not in ("databricks", "databricks-uc")
    if local and running_on_cluster() and not settings.mlflow.allow_local_store:
        raise ConfigError(
            f"mlflow: on a cluster the runs would go to {mask_url_secrets(uri)}, on the driver, and be lost with it; "
            "set mlflow.tracking_uri (or MLFLOW_TRACKING_URI) to a tracking server or 'databricks', or "
            "--set mlflow.allow_local_store=true to keep them there anyway"
        )


def setup_mlflow(settings: Settings) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    import mlflow

    quiet_mlflow()
    uri = tracking_uri(settings)
    refuse_driver_local_store(settings, uri)
    mlflow.set_tracking_uri(without_credentials(uri))
    if settings.mlflow.registry_uri:  # Databricks: the Unity Catalog model registry (models named catalog.schema.x)
        mlflow.set_registry_uri(without_credentials(settings.mlflow.registry_uri))
    experiment = mlflow.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    artifacts = None
    if uri.startswith("sqlite:"):  # keep artifacts beside the store, not in ./mlruns of whatever the CWD is
        artifacts = (settings.data_path / "mlartifacts").as_uri()
    experiment_id = mlflow.create_experiment(settings.mlflow.experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str | None:
    """The checkout's commit, or BACKFORTH_GIT_SHA (set by the wheel build), or None."""
    if os.environ.get("BACKFORTH_GIT_SHA"):
        return os.environ["BACKFORTH_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def table_fields(job_cfg: Any) -> dict[str, str]:
    """``{field: table}`` for every ``*_table`` field of a job config."""
    if job_cfg is None or not dataclasses.is_dataclass(job_cfg):
        return {}
    return {
        f.name: getattr(job_cfg, f.name)
        for f in dataclasses.fields(job_cfg)
        if f.name.endswith("_table") and isinstance(getattr(job_cfg, f.name), str)
    }


def log_config(spec: JobSpec, settings: Settings) -> None:
    """Tags, a flat subset of params, and the whole resolved config as an artifact."""
    import mlflow

    tags = {
        "backforth.job": spec.name,
        "backforth.env": settings.env,
        "backforth.config_hash": config_hash(settings),
        "backforth.version": __version__,
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    mlflow.set_tags(tags)
    flat = flatten(to_dict(settings)["job"] or {}, "job.")
    flat.update({"env": settings.env, "tables.schema": settings.tables.schema})
    params = {k: str(v)[:MAX_PARAM_CHARS] for k, v in list(flat.items())[:MAX_PARAMS]}
    mlflow.log_params(params)
    mlflow.log_text(dump_yaml(settings), "config/resolved.yaml")


def log_lineage(spark: Any, settings: Settings) -> dict[str, int]:
    """Log each existing table of the job as an MLflow dataset at its current Delta version."""
    import mlflow

    from backforth.tables import table_exists, table_version

    versions: dict[str, int] = {}
    for field_name, short in table_fields(settings.job).items():
        fqn = qualify(settings, short)
        if not table_exists(spark, fqn):
            continue
        version = table_version(spark, fqn)
        versions[fqn] = version
        log_delta_dataset(fqn, version, "input" if field_name.startswith("input") else "output")
        mlflow.set_tag(f"table.{field_name}", f"{fqn}@v{version}")
    return versions


def log_delta_dataset(fqn: str, version: int, context: str) -> None:
    """``fqn`` at Delta ``version`` as an MLflow dataset of the active run. A source-only dataset: MLflow's
    ``load_delta`` would read the table and run an approximate count through the RDD API (a Spark job per table,
    and no RDDs over Spark Connect); the schema is in the catalog and the row counts in ``step_runs``."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException

    from backforth.hashing import fingerprint

    digest = f"{fqn}@v{version}"  # MLflow keeps at most 36 characters of a digest
    digest = digest if len(digest) <= 36 else fingerprint(digest, 16)
    source = DeltaDatasetSource(delta_table_name=fqn, delta_table_version=version)
    dataset = MetaDataset(source, name=fqn, digest=digest)
    try:
        mlflow.log_input(dataset, context=context)
    except MlflowException as exc:
        # MLflow's store creates a dataset row on first use without a lock: two runs logging the same table version
        # at once (two jobs) can both try, and the loser's insert fails. The row now exists; logging again links it.
        if "UNIQUE constraint" not in str(exc) and "IntegrityError" not in str(exc):
            raise
        mlflow.log_input(dataset, context=context)


def log_step_inputs(step_run: Any, logged: dict[str, int]) -> None:
    """The inputs a step resolved through ``step_runs`` (e.g. the score run filter read), as MLflow datasets at the
    Delta version it read, where the config's table fields did not name them already."""
    import mlflow

    for ref in step_run.inputs:
        if not ref.table or ref.table in logged or ref.table_version is None:
            continue
        fqn, version = ref.table, ref.table_version
        log_delta_dataset(fqn, version, "input")
        mlflow.set_tag(f"input.{ref.step or fqn}", f"{fqn}@v{version}" + (f" ({ref.step_version})" if ref.step else ""))


def input_refs(spark: Any, settings: Settings) -> list[Any]:
    """The job's ``input*_table`` tables that exist, at their current Delta versions (what it is about to read)."""
    from backforth.lineage import InputRef
    from backforth.tables import table_exists, table_version

    refs = []
    for field_name, short in table_fields(settings.job).items():
        fqn = qualify(settings, short)
        if field_name.startswith("input") and table_exists(spark, fqn):
            refs.append(InputRef(fqn, table_version=table_version(spark, fqn)))
    return refs


def complete(step_run: Any, reported: Any, settings: Settings, defaults: list[Any], tables: dict[str, int]) -> None:
    """Fill the lineage row from what the job reported, else from its config's tables."""
    import dataclasses as dc

    if reported is not None:
        for f in dc.fields(reported):
            if f.name not in ("run_id", "step", "status", "mlflow_run_id", "started_at") and getattr(reported, f.name):
                setattr(step_run, f.name, getattr(reported, f.name))
    reported_tables = {ref.table for ref in step_run.inputs}
    step_run.inputs = list(step_run.inputs) + [ref for ref in defaults if ref.table not in reported_tables]
    output = getattr(settings.job, "output_table", None)
    if step_run.output_table is None and isinstance(output, str):
        step_run.output_table = qualify(settings, output)
    if step_run.output_table in tables:
        step_run.output_version = tables[step_run.output_table]


def run_job(spec: JobSpec, settings: Settings, spark: Any = None) -> JobOutcome:
    """Run ``spec`` with ``settings`` as one MLflow run and one ``step_runs`` row; a failing job marks both FAILED
    and re-raises."""
    import mlflow

    from backforth import lineage
    from backforth.spark import get_spark

    experiment_id = setup_mlflow(settings)
    run_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None) as run:
        log_config(spec, settings)
        spark = spark or get_spark(settings)
        step_run = lineage.StepRun(step=spec.name, mlflow_run_id=run.info.run_id)
        defaults = input_refs(spark, settings)
        lineage.record_start(spark, settings, step_run)
        mlflow.set_tag("backforth.step_run", step_run.run_id)
        started = time.perf_counter()
        keep.configure(settings.spark.checkpoint, schema_name(settings) or None)
        crash.point(f"{spec.name}.started")
        try:
            result = spec.fn(spark, settings)
        except BaseException as exc:
            step_run.status, step_run.error = lineage.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
            try:
                lineage.record_end(spark, settings, step_run)
            except Exception as inner:  # noqa: BLE001 - the job's own error is the one to show
                print(f"[backforth] could not record the failed run in step_runs: {inner}", file=sys.stderr)
            raise
        finally:
            keep.drop_scratch(spark)
        result = result if isinstance(result, JobResult) else JobResult(dict(result or {}))
        metrics = dict(result.metrics)
        if result.tags:
            mlflow.set_tags(result.tags)
        for name, figure in result.figures.items():
            mlflow.log_figure(figure, f"plots/{name}")
        for name, table in result.tables.items():
            mlflow.log_table(data=table, artifact_file=f"tables/{name}.json")
        for local, folder in result.artifacts.items():
            mlflow.log_artifact(local, artifact_path=folder or None)
        metrics["duration_s"] = round(time.perf_counter() - started, 3)
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        mlflow.log_metrics(numeric)
        mlflow.log_text(json.dumps(metrics, indent=2, sort_keys=True, default=str), "metrics.json")
        tables = log_lineage(spark, settings)
        complete(step_run, result.lineage, settings, defaults, tables)
        log_step_inputs(step_run, tables)
        step_run.status = lineage.FINISHED
        crash.point(f"{spec.name}.before_finish")
        lineage.record_end(spark, settings, step_run)
    print(
        f"[backforth] {spec.name}: run {run.info.run_id} in experiment '{settings.mlflow.experiment}'", file=sys.stderr
    )
    shown_uri = mask_url_secrets(tracking_uri(settings))
    return JobOutcome(run.info.run_id, experiment_id, shown_uri, numeric, tables, dict(result.tags), step_run.run_id)
