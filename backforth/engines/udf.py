"""The generation UDF: an iterator pandas UDF bound to this worker's engine (see backforth.engines.base), and the
same generation as a ``mapInPandas`` stage (:func:`generate_frame`, what the LLM steps use) that can carry a Spark
``ResourceProfile`` so that only the generation stage asks for GPUs.

``make_generate_udf(profile, sampling, prompt)`` returns a UDF of two columns, a struct of the prompt's variables and
a per-row seed, whose result is a struct (text, error, prompt_tokens, output_tokens, finish_reason, probs). It is
marked non-deterministic so Spark never evaluates it twice for one row. Within each Arrow batch the prompts are sorted
by length before they reach the engine (less padding, better batching) and the results are put back in row order.
Only the profile, sampling and template (small dataclasses) are captured; the engine is looked up inside the task.
"""

# No `from __future__ import annotations` here: Spark resolves the UDFs' type hints at definition time.
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pandas as pd

from backforth.engines.base import Generation, ModelProfile, Request, Sampling
from backforth.prompts import PromptTemplate

RESULT_SCHEMA = (
    "text string, error string, prompt_tokens int, output_tokens int, finish_reason string, probs map<string,double>, "
    "engine_s double"
)
RESULT_FIELDS = ["text", "error", "prompt_tokens", "output_tokens", "finish_reason", "probs", "engine_s"]


def length_order(sizes: list[int]) -> list[int]:
    """Row positions sorted by prompt size (stable), the order requests are handed to the engine."""
    return sorted(range(len(sizes)), key=lambda i: sizes[i])


def generate_batch(
    engine: Any,
    template: PromptTemplate,
    sampling: Sampling,
    rows: list[dict[str, Any]],
    seeds: list[Any],
    candidates: list[str] | None = None,
    constraint: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Render, sort by length, generate, restore row order. Pure Python: tested without Spark.
    With ``candidates``, no text is generated: each row gets the next-token probabilities of the candidates.
    ``constraint``: every request's output format (backforth.structured), None for free generation.
    ``engine_s``: the engine call's wall time shared equally by the rows that reached it (0 for rows refused before
    it): summed over a step, the seconds its engines were busy, which cost accounting turns into GPU-hours."""
    results: list[dict[str, Any] | None] = [None] * len(rows)
    requests, positions = [], []
    for i, (values, seed) in enumerate(zip(rows, seeds, strict=True)):
        if not any(isinstance(v, str) and v.strip() for v in values.values()):
            results[i] = _as_row(Generation(None, "empty_prompt", finish_reason="error"))  # nothing to ask about
            continue
        seed = None if seed is None or seed != seed else int(seed)  # NaN from pandas = no per-row seed
        requests.append(Request(template.render(**values), template.prefill, seed, constraint))
        positions.append(i)
    order = length_order([sum(len(m["content"]) for m in r.messages) for r in requests])
    ordered = [requests[i] for i in order]
    started = time.perf_counter()
    if not requests:
        outputs = []
    elif candidates:
        outputs = engine.next_token_probs(ordered, candidates)
    else:
        outputs = engine.generate(ordered, sampling)
    share = (time.perf_counter() - started) / max(1, len(requests))
    for k, out in zip(order, outputs, strict=True):
        results[positions[k]] = _as_row(out, share)
    return [r for r in results if r is not None]


def _as_row(out: Generation, engine_s: float = 0.0) -> dict[str, Any]:
    return {
        "text": out.text,
        "error": out.error,
        "prompt_tokens": out.prompt_tokens,
        "output_tokens": out.output_tokens,
        "finish_reason": out.finish_reason,
        "probs": out.probs,
        "engine_s": engine_s,
    }


def result_fields() -> list[Any]:
    """The generation's fields as Spark types (built in Python: no JVM, so Spark Connect builds them too)."""
    from pyspark.sql import types as T

    s = T.StringType()
    types = [s, s, T.IntegerType(), T.IntegerType(), s, T.MapType(s, T.DoubleType()), T.DoubleType()]
    return [T.StructField(name, t) for name, t in zip(RESULT_FIELDS, types, strict=True)]


def generate_frame(
    df: Any,
    variables: dict[str, str],
    seed: str,
    profile: ModelProfile,
    sampling: Sampling,
    template: PromptTemplate,
    candidates: list[str] | None = None,
    resources: Any = None,
    call_rows: int | None = None,
    constraint: dict[str, Any] | None = None,
) -> Any:
    """``df`` plus a ``gen`` struct column (the fields of :data:`RESULT_FIELDS`), generated in one ``mapInPandas``
    stage: prompt variable ``var`` takes column ``variables[var]``, the per-row seed column ``seed``.

    ``resources`` (a Spark ``ResourceProfile``, see :func:`gpu_stage_profile`) makes Spark run this stage's tasks
    with the GPUs it asks for — one task per GPU — while every other stage of the application keeps every core.
    ``call_rows``: Arrow batches are gathered until about this many rows (up to 1.25×, so a task's share of a shard
    is one call, not a full call and a sliver) and generated in one engine call; None = one call per Arrow batch.
    ``constraint``: the output format every row's generation is held to (backforth.structured)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    profile, sampling = replace(profile), replace(sampling)  # plain copies: nothing else rides in the closure
    names = list(variables)
    columns = [variables[v] for v in names]
    fields = result_fields()
    hidden = [f"_gen_{f.name}" for f in fields]
    pairs = list(zip(hidden, fields, strict=True))
    schema = T.StructType([*df.schema.fields, *[T.StructField(h, f.dataType) for h, f in pairs]])

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from backforth.engines.base import get_engine

        engine = get_engine(profile)
        for frame in gathered(frames, call_rows):
            values = [frame[c].tolist() for c in columns]
            rows = [{n: v[i] for n, v in zip(names, values, strict=True)} for i in range(len(frame))]
            out = generate_batch(engine, template, sampling, rows, frame[seed].tolist(), candidates, constraint)
            result = pd.DataFrame(out, columns=RESULT_FIELDS).astype({"prompt_tokens": "int32",
                                                                        "output_tokens": "int32"})  # fmt: skip
            for name, column in zip(RESULT_FIELDS, hidden, strict=True):
                frame[column] = result[name].to_numpy()
            yield frame

    generated = df.mapInPandas(run, schema, profile=resources) if resources else df.mapInPandas(run, schema)
    gen = F.struct(*[F.col(h).alias(f.name) for h, f in pairs])
    return generated.withColumn("gen", gen).drop(*hidden)


def gathered(frames: Iterator[pd.DataFrame], rows: int | None) -> Iterator[pd.DataFrame]:
    """``frames`` regrouped into frames of at least ``rows`` rows (the last may be smaller; at most 1.25 × ``rows``
    before a frame is released, so a remainder is never a sliver on its own); unchanged when ``rows`` is None."""
    if not rows:
        yield from frames
        return
    held: list[pd.DataFrame] = []
    size = 0
    for frame in frames:
        held.append(frame)
        size += len(frame)
        if size >= rows * 1.25:
            yield pd.concat(held, ignore_index=True)
            held, size = [], 0
    if held:
        yield pd.concat(held, ignore_index=True)


def gpu_stage_profile(spark: Any, profile: ModelProfile) -> Any:
    """A Spark ``ResourceProfile`` asking ``profile.gpus`` GPUs (and one CPU) per generation task, where Spark can
    honour one (stage-level scheduling with static allocation: a standalone, YARN or Kubernetes master, executors
    that declare GPUs); None elsewhere — local mode, a CPU profile, executors without GPUs, dynamic allocation —
    where the stage runs like any other (an application-wide ``spark.task.resource.gpu.amount`` then applies). Build
    it once per step and reuse it: over Spark Connect every build registers a new profile, and one stage refuses two.
    Reads the session's conf only (Spark Connect serves it)."""
    if not profile.gpus:
        return None
    from backforth.spark import conf_value

    master = conf_value(spark, "spark.master") or ""
    if not master.startswith(("spark://", "yarn", "k8s://", "local-cluster")):
        return None
    if (conf_value(spark, "spark.dynamicAllocation.enabled") or "false").lower() == "true":
        return None  # TaskResourceProfiles need static allocation; with dynamic allocation the app-wide amount holds
    if float(conf_value(spark, "spark.executor.resource.gpu.amount") or 0) < profile.gpus:
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    return ResourceProfileBuilder().require(TaskResourceRequests().cpus(1).resource("gpu", profile.gpus)).build


def make_generate_udf(
    profile: ModelProfile, sampling: Sampling, template: PromptTemplate, candidates: list[str] | None = None
) -> Any:
    """``udf(F.struct(<variables>), seed_col)`` → struct column with the generation (or, with ``candidates``, the
    next-token probabilities of those strings in ``probs``)."""
    from pyspark.sql.functions import pandas_udf

    profile, sampling = replace(profile), replace(sampling)  # plain copies: nothing else rides in the closure

    @pandas_udf(RESULT_SCHEMA)  # type: ignore[call-overload]
    def generate(batches: Iterator[tuple[pd.DataFrame, pd.Series]]) -> Iterator[pd.DataFrame]:
        from backforth.engines.base import get_engine

        engine = get_engine(profile)
        for variables, seeds in batches:
            rows = variables.to_dict("records")
            out = generate_batch(engine, template, sampling, rows, seeds.tolist(), candidates)
            frame = pd.DataFrame(out, columns=RESULT_FIELDS)
            yield frame.astype({"prompt_tokens": "int32", "output_tokens": "int32"})

    return generate.asNondeterministic()
