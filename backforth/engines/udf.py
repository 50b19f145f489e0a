"""The generation UDF: an iterator pandas UDF bound to this worker's engine (see backforth.engines.base).

``make_generate_udf(profile, sampling, prompt)`` returns a UDF of two columns, a struct of the prompt's variables and
a per-row seed, whose result is a struct (text, error, prompt_tokens, output_tokens, finish_reason, probs). It is
marked non-deterministic so Spark never evaluates it twice for one row. Within each Arrow batch the prompts are sorted
by length before they reach the engine (less padding, better batching) and the results are put back in row order.
Only the profile, sampling and template (small dataclasses) are captured; the engine is looked up inside the task.
"""

# No `from __future__ import annotations` here: Spark resolves the UDFs' type hints at definition time.
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pandas as pd

from backforth.engines.base import Generation, ModelProfile, Request, Sampling
from backforth.prompts import PromptTemplate

RESULT_SCHEMA = (
    "text string, error string, prompt_tokens int, output_tokens int, finish_reason string, probs map<string,double>"
)
RESULT_FIELDS = ["text", "error", "prompt_tokens", "output_tokens", "finish_reason", "probs"]


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
) -> list[dict[str, Any]]:
    """Render, sort by length, generate, restore row order. Pure Python: tested without Spark.
    With ``candidates``, no text is generated: each row gets the next-token probabilities of the candidates."""
    results: list[dict[str, Any] | None] = [None] * len(rows)
    requests, positions = [], []
    for i, (values, seed) in enumerate(zip(rows, seeds, strict=True)):
        if not any(isinstance(v, str) and v.strip() for v in values.values()):
            results[i] = _as_row(Generation(None, "empty_prompt", finish_reason="error"))  # nothing to ask about
            continue
        seed = None if seed is None or seed != seed else int(seed)  # NaN from pandas = no per-row seed
        requests.append(Request(template.render(**values), template.prefill, seed))
        positions.append(i)
    order = length_order([sum(len(m["content"]) for m in r.messages) for r in requests])
    ordered = [requests[i] for i in order]
    if not requests:
        outputs = []
    elif candidates:
        outputs = engine.next_token_probs(ordered, candidates)
    else:
        outputs = engine.generate(ordered, sampling)
    for k, out in zip(order, outputs, strict=True):
        results[positions[k]] = _as_row(out)
    return [r for r in results if r is not None]


def _as_row(out: Generation) -> dict[str, Any]:
    return {
        "text": out.text,
        "error": out.error,
        "prompt_tokens": out.prompt_tokens,
        "output_tokens": out.output_tokens,
        "finish_reason": out.finish_reason,
        "probs": out.probs,
    }


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
