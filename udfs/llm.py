"""The generation UDF: an iterator pandas UDF bound to this worker's engine (see backforth.engines).

``make_generate_udf(profile, sampling, prompt)`` returns a UDF of two columns, a struct of the prompt's variables and
a per-row seed, whose result is a struct (text, error, prompt_tokens, output_tokens, finish_reason). It is marked
non-deterministic so Spark never evaluates it twice for one row. Within each Arrow batch the prompts are sorted by
length before they reach the engine (less padding, better batching) and the results are put back in row order.
Only the profile, sampling and template (small dataclasses) are captured; the engine is looked up inside the task.
"""

# No `from __future__ import annotations` here: Spark resolves the UDFs' type hints at definition time.
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pandas as pd

from backforth.engines.base import Generation, ModelProfile, Request, Sampling
from udfs.prompts import PromptTemplate

RESULT_SCHEMA = "text string, error string, prompt_tokens int, output_tokens int, finish_reason string"  # one per row
RESULT_FIELDS = ["text", "error", "prompt_tokens", "output_tokens", "finish_reason"]


def length_order(sizes: list[int]) -> list[int]:
    """Row positions sorted by prompt size (stable), the order requests are handed to the engine."""
    return sorted(range(len(sizes)), key=lambda i: sizes[i])


def generate_batch(
    engine: Any, template: PromptTemplate, sampling: Sampling, rows: list[dict[str, Any]], seeds: list[Any]
) -> list[dict[str, Any]]:
    """Render, sort by length, generate, restore row order. Pure Python: tested without Spark."""
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
    outputs = engine.generate([requests[i] for i in order], sampling) if requests else []
    for k, out in zip(order, outputs, strict=True):
        results[positions[k]] = _as_row(out)
    return [r for r in results if r is not None]


def make_instruction_cleaner(echo_text: str, min_words: int, max_words: int) -> Any:
    """Vectorised udfs.parsing.clean_instruction: (raw, document, finish_reason) → struct(instruction, reject_reason).
    Rows without output (an engine error) stay NULL in both fields: their reason is the ``error`` column."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("instruction string, reject_reason string")  # type: ignore[call-overload]
    def clean(raw: pd.Series, document: pd.Series, finish: pd.Series) -> pd.DataFrame:
        from udfs.parsing import clean_instruction

        out = [
            clean_instruction(r, d, echo_text, f, min_words, max_words) if r is not None else (None, None)
            for r, d, f in zip(raw, document, finish, strict=True)
        ]
        return pd.DataFrame(out, columns=["instruction", "reject_reason"])

    return clean


def _as_row(out: Generation) -> dict[str, Any]:
    return {
        "text": out.text,
        "error": out.error,
        "prompt_tokens": out.prompt_tokens,
        "output_tokens": out.output_tokens,
        "finish_reason": out.finish_reason,
    }


def make_generate_udf(profile: ModelProfile, sampling: Sampling, template: PromptTemplate) -> Any:
    """``udf(F.struct(<variables>), seed_col)`` → struct column with the generation."""
    from pyspark.sql.functions import pandas_udf

    profile, sampling = replace(profile), replace(sampling)  # plain copies: nothing else rides in the closure

    @pandas_udf(RESULT_SCHEMA)  # type: ignore[call-overload]
    def generate(batches: Iterator[tuple[pd.DataFrame, pd.Series]]) -> Iterator[pd.DataFrame]:
        from backforth.engines.base import get_engine

        engine = get_engine(profile)
        for variables, seeds in batches:
            rows = variables.to_dict("records")
            out = generate_batch(engine, template, sampling, rows, seeds.tolist())
            frame = pd.DataFrame(out, columns=RESULT_FIELDS)
            yield frame.astype({"prompt_tokens": "int32", "output_tokens": "int32"})

    return generate.asNondeterministic()
