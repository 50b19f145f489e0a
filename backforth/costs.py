"""What an LLM step costs: engine-busy seconds, tokens, GPU-hours and money, measured after a run and estimated
before one (``backforth <llm-step> --dry-run``).

Measured: every generated row carries ``engine_s``, its share of the engine call's wall time (backforth.engines.udf),
so a step version's cost is a sum over its rows, whichever runs and shards wrote them. GPU-hours = engine-hours ×
the profile's ``gpus`` per engine; cost = GPU-hours × the profile's ``gpu_hour_usd`` (set by the user: prices
differ by cloud and contract, and nothing here guesses one).
"""

from __future__ import annotations

from typing import Any

from backforth.engines import ModelProfile


def costs(profile: ModelProfile, written: Any) -> dict[str, float]:
    """What the step version's rows cost (every run that wrote them): engine-busy seconds, tokens in and out, kept
    rows, engine-hours; on a declared GPU type GPU-hours (engine-hours × GPUs per engine), and with a price the cost
    and the cost per 1,000 kept rows. Rows written before ``engine_s`` existed count as 0 s."""
    from pyspark.sql import functions as F

    row = written.agg(
        F.coalesce(F.sum("engine_s"), F.lit(0.0)).alias("s"),
        F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("tin"),
        F.coalesce(F.sum("output_tokens"), F.lit(0)).alias("tout"),
    ).collect()[0]
    busy = float(row["s"])
    out = {"cost.engine_busy_s": round(busy, 3), "cost.tokens_in": int(row["tin"]), "cost.tokens_out": int(row["tout"]),
           "cost.engine_hours": round(busy / 3600, 9)}  # fmt: skip
    if profile.gpus_per_engine:
        gpu_hours = busy / 3600 * profile.gpus_per_engine
        out["cost.gpu_hours"] = round(gpu_hours, 9)
        if profile.gpu_hour_usd is not None:
            out["cost.usd"] = round(gpu_hours * profile.gpu_hour_usd, 9)
    return out


CHARS_PER_TOKEN = 4.0  # English text in Llama-style tokenizers: about 4 characters per token (an estimate)


def estimate(spark: Any, settings: Any, step: Any) -> dict[str, Any]:
    """Before spending anything: pending rows, expected prompt and output tokens, engine- and GPU-hours at the
    profile's declared full-batch ``throughput``, and the cost at its ``gpu_hour_usd``. Prompt tokens are counted
    as characters ÷ :data:`CHARS_PER_TOKEN` (the step's variables plus the prompt's own text); output tokens as the
    mean of the rows the step's output table already holds, else half of ``max_tokens``."""
    from pyspark.sql import functions as F

    from backforth.llm import prepare
    from backforth.tables import table_exists

    ctx, pending, target = prepare(spark, settings, step, register=False)
    profile, template = ctx.profile, ctx.template
    columns = [col for var, col in step.variables.items() if var in template.variables]
    size = sum((F.coalesce(F.length(F.col(c)), F.lit(0)) for c in columns), F.lit(0))
    row = pending.agg(F.count("*").alias("n"), F.coalesce(F.sum(size), F.lit(0)).alias("chars")).collect()[0]
    rows, fixed = int(row["n"]), len(template.system) + len(template.user) + len(template.prefill)
    prompt_tokens = (int(row["chars"]) + rows * fixed) / CHARS_PER_TOKEN
    mean_out, basis = ctx.sampling.max_tokens / 2, "half of max_tokens (no earlier rows)"
    if table_exists(spark, target):
        seen = spark.table(target).where("error IS NULL").agg(F.avg("output_tokens")).collect()[0][0]
        if seen is not None:
            mean_out, basis = float(seen), f"mean of the rows in {target}"
    out = {"step": step.name, "step_version": ctx.version, "model": profile.name, "pending_rows": rows,
           "prompt_tokens": round(prompt_tokens), "output_tokens": round(rows * mean_out),
           "output_tokens_per_row": round(mean_out, 1), "output_basis": basis}  # fmt: skip
    prefill, decode = profile.throughput.get("prefill_tokens_per_s"), profile.throughput.get("output_tokens_per_s")
    if prefill and decode:
        engine_s = prompt_tokens / float(prefill) + rows * mean_out / float(decode)
        out["engine_hours"] = round(engine_s / 3600, 6)
        if profile.gpus_per_engine:
            out["gpu_hours"] = round(engine_s / 3600 * profile.gpus_per_engine, 6)
            if profile.gpu_hour_usd is not None:
                out["cost_usd"] = round(out["gpu_hours"] * profile.gpu_hour_usd, 4)
    return out


def describe(est: dict[str, Any]) -> str:
    """The estimate as the lines ``--dry-run`` prints."""
    lines = [
        f"estimate for {est['step']} ({est['step_version']}, model {est['model']}):",
        f"  pending rows      {est['pending_rows']:,}",
        f"  prompt tokens     ~{est['prompt_tokens']:,} (characters / {CHARS_PER_TOKEN:g})",
        f"  output tokens     ~{est['output_tokens']:,} ({est['output_tokens_per_row']} per row, "
        f"{est['output_basis']})",
    ]
    if "engine_hours" in est:
        lines.append(f"  engine-hours      {est['engine_hours']} at the profile's full-batch throughput")
    else:
        lines.append("  engine-hours      ? (the profile declares no throughput)")
    if "gpu_hours" in est:
        lines.append(f"  GPU-hours         {est['gpu_hours']}")
    if "cost_usd" in est:
        lines.append(f"  cost              ${est['cost_usd']:,.4f} at the profile's gpu_hour_usd")
    elif "gpu_hours" in est:
        lines.append("  cost              ? (set gpu_hour_usd in the profile or job.model_options)")
    return "\n".join(lines)
