"""LLM steps as declarations, run by one driver.

A step is an :class:`LLMStep`: the config class, the catalog table it writes, the step it reads (found through
``step_runs``), how input rows are built, which input columns fill which prompt variables, the parser that turns the
generation into output columns, and the outcome column its counts and figure show. :func:`run_step` does the rest,
the same way for every step:

load profile → prompt → step_version → resolve input → pending rows → shards → outcome counts → figure → lineage.

- ``step_version`` is ``<declared>-<fingerprint>`` of everything that decides the output: model identity, sampling,
  prompt content, the input run's step version and the step's declared parameters. Pending work is "input rows
  without an output row for this step_version", so changing any of them means a fresh set of rows beside the old.
- Pending rows are generated in shards of one atomic Delta append each (backforth.shards): a killed run loses at most
  the shard in flight and a re-run resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backforth import catalog, lineage
from backforth.costs import costs
from backforth.engines import ModelProfile, Sampling, load_profile
from backforth.engines.udf import gpu_stage_profile
from backforth.hashing import fingerprint
from backforth.lineage import InputRef, StepRun
from backforth.plots import bar_chart
from backforth.prompts import PromptTemplate, load_prompt
from backforth.registry import JobResult, job
from backforth.shards import Progress, run_in_shards, shard_plan
from backforth.structured import describe as describe_constraint
from backforth.structured import resolve as resolve_constraint
from backforth.tables import pending_rows, qualify, table_exists, table_version
from backforth.tracking import PromptRef, register_prompt
from backforth.truncation import TRUNCATION_WARN_SHARE, add_truncation, truncation_warning

__all__ = ["STEPS", "TRUNCATION_WARN_SHARE", "Context", "LLMStep", "llm_step", "truncation_warning"]

log = logging.getLogger("backforth.llm")

SEED_MASK = 0x7FFFFFFF  # per-row seeds are non-negative 31-bit ints (every engine accepts them)


@dataclass
class Context:
    """What the declaration's hooks see: the resolved config, model, prompt, version and the run being read."""

    spark: Any
    settings: Any
    cfg: Any
    profile: ModelProfile
    template: PromptTemplate
    sampling: Sampling
    upstream: StepRun | None = None
    prompt: PromptRef | None = None
    version: str = ""
    inputs: list[InputRef] = field(default_factory=list)
    resources: Any = None  # the generation stage's ResourceProfile (GPUs per task), None without stage scheduling
    params: dict[str, str] = field(default_factory=dict)  # the step's declared parameters (in its step version)
    call_rows: int | None = None  # rows per engine call: a task's share of a shard
    constraint: dict[str, Any] | None = None  # the output format the engine is held to (backforth.structured)

    def read(self, table_name: str) -> Any:
        """A config-named table at its current Delta version, read as of that version and recorded as an input of
        this run: the version in ``step_runs`` is exactly what the step read."""
        fqn = qualify(self.settings, table_name)
        if not table_exists(self.spark, fqn):
            from backforth.errors import MissingInputError

            writer = next((t.writers[0] for t in catalog.TABLES.values() if t.name == table_name), None)
            raise MissingInputError(f"table {fqn} does not exist", writer)
        ref = InputRef(fqn, table_version=table_version(self.spark, fqn))
        self.inputs.append(ref)
        return as_of(self.spark, ref)

    def read_upstream(self) -> Any:
        """The rows the input run wrote (its output table at its step version, as of the recorded table version)."""
        from pyspark.sql import functions as F

        ref = next(i for i in self.inputs if self.upstream is not None and i.step == self.upstream.step)
        return as_of(self.spark, ref).where(F.col("step_version") == ref.step_version)


def as_of(spark: Any, ref: InputRef) -> Any:
    """The table of ``ref`` at its recorded Delta version (SQL time travel, which Spark Connect serves too)."""
    from backforth.tables import quote

    if ref.table_version is None:
        return spark.table(ref.table)
    return spark.sql(f"SELECT * FROM {quote(ref.table)} VERSION AS OF {int(ref.table_version)}")


Hook = Callable[[Context], Any]


@dataclass(frozen=True)
class LLMStep:
    """One LLM step, declared.

    - ``rows(ctx)``: the input rows, with the ``key`` columns, the columns named in ``variables`` and any column
      ``columns`` passes through. ``ctx.read(name)`` reads a table, ``ctx.read_upstream()`` the input run's rows.
    - ``variables``: prompt variable → input column.
    - ``parse(ctx)``: a struct Column made from the generation (``gen.text``, ``gen.finish_reason``, ``gen.probs``)
      and input columns, stored as ``parsed``; None for no parser.
    - ``columns(ctx)``: the step's own output columns (after the key and ``step_version``, before the generation
      columns every LLM row carries), as Columns or names over the input, ``gen`` and ``parsed``.
    - ``outcome``: SQL over the output rows naming each row's outcome, for counts (``<outcome_metric>.<value>``) and
      the figure; None when ``summary`` reports instead.
    """

    name: str
    config: type
    table: str  # the catalog table it writes (config ``output_table`` may name another)
    description: str  # one line: what ``backforth --help`` shows
    rows: Hook
    variables: dict[str, str]
    columns: Callable[[Context], list[Any]]
    parse: Hook | None = None
    reads: Callable[[Any], str | None] = lambda cfg: None  # the step whose finished run is the input
    reads_params: Callable[[Any], dict[str, str]] = lambda cfg: {}  # which of that step's runs (e.g. a kind)
    key: tuple[str, ...] = ("doc_id",)
    seed_key: Callable[[Any], Any] | None = None  # cfg → Column; default: the first key column
    prompts: Path | None = None  # folder of the prompt files (the project's: udfs/prompts)
    template: Callable[[Any, PromptTemplate], PromptTemplate] | None = None  # adjust the loaded template
    sampling: Callable[[Any], Sampling] | None = None  # adjust the configured sampling
    candidates: Callable[[Any], list[str] | None] = lambda cfg: None  # score the next token over these instead
    params: Callable[[Any], dict[str, str]] = lambda cfg: {}  # also decide the output; recorded in step_runs
    outcome: str | None = None
    outcome_metric: str = "outcome"
    rows_metric: str = "rows"  # metrics: <rows_metric>_rows (docs_rows, pairs_rows)
    summary: Callable[[Context, Any], JobResult] | None = None  # extra metrics, figures and tags from the rows
    # whether hitting max_tokens cuts a free-text output (truncation counted and warned); False where the step asks
    # for a fixed number of tokens on purpose (score's logprob mode reads one token's probabilities)
    capped: Callable[[Any], bool] = lambda cfg: True
    # named output constraints the config's ``structured:`` may pick (cfg → constraint; backforth.structured)
    structured: dict[str, Callable[[Any], dict[str, Any]]] = field(default_factory=dict)
    figure_title: Callable[[Context], str] | None = None


STEPS: dict[str, LLMStep] = {}


def llm_step(step: LLMStep) -> LLMStep:
    """Declare ``step`` and register it as a job: the only thing a new LLM step has to do."""
    STEPS[step.name] = step
    job(step.name, config=step.config, description=step.description)(_runner(step))
    return step


def _runner(step: LLMStep) -> Callable[[Any, Any], JobResult]:
    def run(spark: Any, settings: Any) -> JobResult:
        return run_step(spark, settings, step)

    run.__module__ = step.config.__module__
    run.__doc__ = step.description
    return run


def step_version(declared: str, profile: ModelProfile, sampling: Sampling, *templates: PromptTemplate,
                 upstream: str | None = None, params: dict[str, str] | None = None) -> str:  # fmt: skip
    """``bt-v1-<hash>``: changes whenever the model, the sampling, a prompt's text, the input run or a parameter
    changes. Nothing is ever appended to it: what it was made from is in ``step_runs``."""
    body: dict[str, Any] = {
        "model": profile.identity(),
        "sampling": asdict(sampling),
        "prompts": [t.tag for t in templates],
    }
    if upstream is not None:
        body["input"] = upstream
    if params:
        body["params"] = params
    return f"{declared}-{fingerprint(body, 8)}"


def row_seed(key: Any, base_seed: int) -> Any:
    """A per-row sampling seed from the row key and the base seed: independent of batching and partitioning."""
    from pyspark.sql import functions as F

    return F.xxhash64(key, F.lit(base_seed)).bitwiseAND(F.lit(SEED_MASK).cast("long"))


def registered_model(profile: ModelProfile) -> dict[str, Any]:
    """The registered model version a profile was pinned to ({} for a folder, a hub id or the embedded model)."""
    from backforth.models import REGISTERED_OPTION

    return dict(profile.options.get(REGISTERED_OPTION) or {})


def model_info(profile: ModelProfile) -> dict[str, str | None]:
    """The ``model`` struct of generated rows and of the step run."""
    version = registered_model(profile).get("version")
    return {"profile": profile.name, "backend": profile.backend, "uri": profile.model,
            "version": None if version is None else str(version)}  # fmt: skip


def generation_columns(profile: ModelProfile, prompt: PromptRef, sampling: Sampling) -> list[Any]:
    """The columns every generated row carries, from the UDF's ``gen`` struct and the ``seed`` column."""
    from pyspark.sql import functions as F

    model = model_info(profile)
    return [
        F.col("gen.text").alias("raw_output"),
        F.col("gen.error").alias("error"),
        F.col("gen.prompt_tokens").alias("prompt_tokens"),
        F.col("gen.output_tokens").alias("output_tokens"),
        F.col("gen.finish_reason").alias("finish_reason"),
        F.struct(*[F.lit(model[k]).cast("string").alias(k) for k in ("profile", "backend", "uri", "version")]).alias(
            "model"
        ),
        F.struct(*[F.lit(getattr(prompt, k)).alias(k) for k in ("name", "version", "uri")]).alias("prompt"),
        F.struct(
            F.lit(sampling.temperature).alias("temperature"),
            F.lit(sampling.top_p).alias("top_p"),
            F.lit(sampling.max_tokens).alias("max_tokens"),
            F.col("seed").alias("seed"),
        ).alias("sampling"),
        F.current_timestamp().alias("created_at"),
        F.col("gen.engine_s").alias("engine_s"),
    ]


def run_tags(step: str, profile: ModelProfile, prompt: PromptRef, version: str, sampling: Sampling) -> dict[str, str]:
    """The MLflow tags every LLM step sets; logs the profile's note (what its output is good for) as a warning."""
    tags = {
        "backforth.step_version": version,
        "backforth.model": f"{profile.name} ({profile.backend}: {profile.model})",
        f"backforth.prompt.{step}": f"{prompt.name}@{prompt.version}",
        "backforth.prompt_uri": prompt.uri,
        "backforth.sampling": json.dumps(asdict(sampling), sort_keys=True),
    }
    registered = registered_model(profile)
    if registered:  # the exact registered version, what the config asked for, and the run that trained it
        tags.update({
            "backforth.model_uri": profile.model,
            "backforth.model_version": f"{registered['name']}/{registered['version']}",
            "backforth.model_requested": registered["requested"],
            "backforth.model_source_run": str(registered.get("run_id") or ""),
        })  # fmt: skip
    if profile.note:
        tags["backforth.quality_note"] = profile.note
        log.warning("%s: %s", profile.name, profile.note)
    return tags


def build(ctx: Context, step: LLMStep, part: Any) -> Any:
    """One shard's input rows → output rows: prompt variables, seed, generation, parser, output columns."""
    from pyspark.sql import functions as F

    from backforth.engines.udf import generate_frame

    cfg = ctx.cfg
    variables = {var: col for var, col in step.variables.items() if var in ctx.template.variables}
    seed_key = step.seed_key(cfg) if step.seed_key else F.col(step.key[0])
    out = part.withColumn("seed", row_seed(seed_key, ctx.sampling.seed))
    out = generate_frame(out, variables, "seed", ctx.profile, ctx.sampling, ctx.template, step.candidates(cfg),
                         ctx.resources, ctx.call_rows, ctx.constraint)  # fmt: skip
    if step.parse is not None:
        out = out.withColumn("parsed", step.parse(ctx))
    return out.select(
        *step.key,
        F.lit(ctx.version).alias("step_version"),
        *step.columns(ctx),
        *generation_columns(ctx.profile, ctx.prompt, ctx.sampling),
    )


def prepare(spark: Any, settings: Any, step: LLMStep, register: bool = True) -> tuple[Context, Any, str]:
    """Everything before generation: profile, prompt, input run, step version, and the pending rows (lazy) with the
    output table. ``register=False`` (a dry run) leaves the prompt registry alone."""
    from pyspark.sql import functions as F

    cfg = settings.job
    profile = load_profile(cfg.model, cfg.model_options)
    folder = step.prompts
    if folder is None:
        from backforth.config import ConfigError

        raise ConfigError(f"LLM step {step.name} declares no prompt folder")
    template = load_prompt(cfg.prompt, folder)
    if step.template is not None:
        template = step.template(cfg, template)
    sampling = step.sampling(cfg) if step.sampling else cfg.sampling
    ctx = Context(spark, settings, cfg, profile, template, sampling)
    reads = step.reads(cfg)
    if reads is not None:
        ctx.upstream = lineage.resolve(spark, settings, reads, getattr(cfg, "input_version", None),
                                       step.reads_params(cfg))  # fmt: skip
        up = ctx.upstream
        ctx.inputs.append(InputRef(up.output_table or "", up.step, up.step_version,
                                   table_version(spark, up.output_table) if up.output_table else None))  # fmt: skip
    ctx.params = step.params(cfg)
    ctx.constraint = resolve_constraint(step.name, getattr(cfg, "structured", None), step.structured, cfg,
                                        profile.backend)  # fmt: skip
    if ctx.constraint:  # only when set: free generation keeps the step versions it always had
        ctx.params["structured"] = describe_constraint(ctx.constraint)
    upstream = ctx.upstream.step_version if ctx.upstream else None
    ctx.version = step_version(cfg.version, profile, sampling, template, upstream=upstream, params=ctx.params)
    ctx.prompt = register_prompt(template, settings) if register else None
    target = qualify(settings, cfg.output_table)
    rows = step.rows(ctx)
    pending = pending_rows(spark, rows, target, list(step.key), F.col("step_version") == ctx.version)
    if cfg.limit is not None:
        pending = pending.orderBy(*step.key).limit(cfg.limit)
    return ctx, pending, target


def run_step(spark: Any, settings: Any, step: LLMStep) -> JobResult:
    """The one driver of every declared LLM step."""
    from pyspark.sql import functions as F

    ctx, pending, target = prepare(spark, settings, step)
    cfg, profile, sampling, params, reads = ctx.cfg, ctx.profile, ctx.sampling, ctx.params, step.reads(ctx.cfg)
    assert ctx.prompt is not None
    ctx.resources = gpu_stage_profile(spark, profile)
    log.info("%s: step %s, model %s (%s), prompt %s v%s%s", step.name, ctx.version, profile.name, profile.backend,
             ctx.prompt.name, ctx.prompt.version,
             f", input {reads} {ctx.upstream.step_version}" if ctx.upstream else "")  # fmt: skip
    progress = Progress(step.name, 0)
    plan = shard_plan(spark, cfg, profile, bounded=ctx.resources is not None)
    ctx.call_rows = plan.rows_per_call
    totals = run_in_shards(spark, pending, list(step.key), target, plan, lambda part: build(ctx, step, part), progress)
    metrics: dict[str, float] = {f"{step.rows_metric}_rows" if k == "rows" else k: v for k, v in totals.items()}
    tokens = totals["prompt_tokens"] + totals["output_tokens"]
    metrics.update({"tokens_per_s": round(tokens / max(totals["generation_s"], 1e-9), 1), "shard_rows": plan.rows,
                    "shard_tasks": plan.tasks, "shards_in_flight": plan.in_flight})  # fmt: skip
    tags = run_tags(step.name, profile, ctx.prompt, ctx.version, sampling)
    if ctx.constraint:
        tags["backforth.structured"] = ctx.params["structured"][:4900]
    if ctx.upstream is not None:
        tags["backforth.input_step_version"] = ctx.upstream.step_version or ""
    result = JobResult(metrics, tags=tags)
    written = spark.table(target).where(F.col("step_version") == ctx.version) if table_exists(spark, target) else None
    if written is not None:
        result.metrics.update(costs(profile, written))
    if written is not None and step.capped(cfg):
        add_truncation(step.name, sampling.max_tokens, written, result)
    if written is not None and step.outcome is not None:
        add_outcomes(ctx, step, written, result)
    if written is not None and step.summary is not None:
        extra = step.summary(ctx, written)
        result.metrics.update(extra.metrics)
        result.figures.update(extra.figures)
        result.tags.update(extra.tags)
    result.lineage = StepRun(
        step=step.name, step_version=ctx.version, inputs=ctx.inputs, output_table=target, model=model_info(profile),
        prompt={"name": ctx.prompt.name, "version": ctx.prompt.version, "uri": ctx.prompt.uri},
        sampling=asdict(sampling), params=params, rows_in=progress.total, rows_out=int(totals["rows"]),
    )  # fmt: skip
    return result


def add_outcomes(ctx: Context, step: LLMStep, written: Any, result: JobResult) -> None:
    """Rows of this version per outcome, the share the catalog counts as kept, and a bar chart."""
    from pyspark.sql import functions as F

    entry = catalog.TABLES.get(step.table)
    kept = F.expr(entry.kept if entry else "error IS NULL")  # a table outside the catalog: rows without an error
    rows = written.groupBy(F.expr(step.outcome).alias("o"), kept.alias("k")).agg(F.count("*").alias("n")).collect()
    if not rows:
        return
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["o"] or "?"] = counts.get(r["o"] or "?", 0) + int(r["n"])
    total = sum(counts.values())
    result.metrics.update({f"{step.outcome_metric}.{k}": v for k, v in counts.items()})
    accepted = sum(int(r["n"]) for r in rows if r["k"])
    result.metrics["accepted_share"] = round(accepted / total, 4)
    result.metrics["cost.accepted_rows"] = accepted
    for name in ("usd", "gpu_hours", "engine_hours"):
        if f"cost.{name}" in result.metrics and accepted:
            result.metrics[f"cost.{name}_per_1k_accepted"] = round(result.metrics[f"cost.{name}"] / accepted * 1e3, 9)
    title = step.figure_title(ctx) if step.figure_title else f"{step.name} outcomes ({ctx.profile.name})"
    result.figures[f"{step.name}_{step.outcome_metric}.png"] = bar_chart(counts, step.outcome_metric, "rows", title)
