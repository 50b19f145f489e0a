"""Parser UDFs of the LLM steps: vectorised wrappers of udfs.parsing over the generation struct's columns.

The generation UDF itself (prompt → engine → struct) lives with the engines: backforth.engines.udf.
"""

# No `from __future__ import annotations` here: Spark resolves the UDFs' type hints at definition time.
from typing import Any

import pandas as pd


def make_instruction_cleaner(echo_text: str, min_words: int, max_words: int) -> Any:
    """Vectorised udfs.parsing.clean_instruction: (raw, document, finish_reason) → struct(instruction, reject_reason).
    Rows without output (an engine error) stay NULL in both fields: their reason is the ``error`` column."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("instruction string, reject_reason string")  # type: ignore[call-overload]
    def clean(raw: pd.Series, document: pd.Series, finish: pd.Series) -> pd.DataFrame:
        from backforth.udfs.parsing import clean_instruction

        out = [
            clean_instruction(r, d, echo_text, f, min_words, max_words) if r is not None else (None, None)
            for r, d, f in zip(raw, document, finish, strict=True)
        ]
        return pd.DataFrame(out, columns=["instruction", "reject_reason"])

    return clean


def make_score_parser() -> Any:
    """(raw text, probs, mode, min mass) → struct(score, expected_score, digit_mass, invalid_reason).
    Text mode parses ``Score: N``; logprob mode turns the digits' probabilities into a score. Rows without output
    (an engine error) stay NULL: their reason is the ``error`` column."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("score int, expected_score double, digit_mass double, invalid_reason string")  # type: ignore
    def parse(raw: pd.Series, probs: pd.Series, mode: pd.Series, min_mass: pd.Series) -> pd.DataFrame:
        from backforth.udfs.parsing import LOW_MASS, digit_distribution, parse_score

        out: list[tuple] = []
        for text, p, m, floor in zip(raw, probs, mode, min_mass, strict=True):
            if m == "logprob":
                if p is None:
                    out.append((None, None, None, None))
                    continue
                mass, expected, top = digit_distribution(dict(p))
                reason = None if mass >= floor else LOW_MASS
                out.append((top if reason is None else None, expected if mass > 0 else None, mass, reason))
            elif text is None:
                out.append((None, None, None, None))
            else:
                score, reason = parse_score(text)
                out.append((score, float(score) if score is not None else None, None, reason))
        return pd.DataFrame(out, columns=["score", "expected_score", "digit_mass", "invalid_reason"])

    return parse


def make_response_extractor(prefill: str, accept_untagged: bool) -> Any:
    """Vectorised udfs.parsing.extract_response: (raw, instruction, document, finish) → struct(response, status).
    Rows without output (an engine error) get status ``engine_error``."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("response string, status string")  # type: ignore
    def extract(raw: pd.Series, instruction: pd.Series, document: pd.Series, finish: pd.Series) -> pd.DataFrame:
        from backforth.udfs.parsing import extract_response

        out = [
            extract_response(r, i, d, f, prefill, accept_untagged) if r is not None else (None, "engine_error")
            for r, i, d, f in zip(raw, instruction, document, finish, strict=True)
        ]
        return pd.DataFrame(out, columns=["response", "status"])

    return extract
