"""Deduplication benchmark: the Spark clean + dedup jobs against a single-process datasketch MinHash LSH reference.

Both run on the synthetic corpus of ``bench/corpus_gen.py``, whose near-duplicate groups are known, and are scored
with pairwise precision / recall / F1 (a pair is two documents in one cluster). Timings leave out start-up: the
Spark session and the cached input DataFrame exist before the clock starts. The last line printed is a row of
``key=value`` figures for scripts; progress goes to stderr.

    python bench/dedup.py --docs 5000
    python bench/dedup.py --docs 2000 --skip-spark --out-json /tmp/ref.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from typing import Any

try:  # run as a script (bench/ on sys.path) or as ``python -m bench.dedup`` from the repository root
    from corpus_gen import NGRAM, Corpus, as_spark_df, generate_labelled, shingles
except ImportError:  # pragma: no cover
    from bench.corpus_gen import NGRAM, Corpus, as_spark_df, generate_labelled, shingles

NAN = float("nan")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def pairs_within(labels: list[Any]) -> int:
    """Unordered pairs of items that carry the same label."""
    return sum(k * (k - 1) // 2 for k in Counter(labels).values())


def pair_scores(predicted: list[Any], truth: list[Any]) -> dict[str, float]:
    """Pairwise precision, recall and F1 from cluster labels (parallel lists), without listing the pairs."""
    true_positive = pairs_within(list(zip(predicted, truth, strict=True)))
    predicted_pairs, true_pairs = pairs_within(predicted), pairs_within(truth)
    precision = true_positive / predicted_pairs if predicted_pairs else 0.0
    recall = true_positive / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positive_pairs": true_positive,
        "predicted_pairs": predicted_pairs,
        "true_pairs": true_pairs,
    }


def pairs_touching(truth: list[int], flagged: list[bool]) -> int:
    """Ground-truth pairs with at least one flagged member (e.g. a document the clean step dropped)."""
    members, hit = Counter(truth), Counter(g for g, f in zip(truth, flagged, strict=True) if f)
    return sum(math.comb(n, 2) - math.comb(n - hit[g], 2) for g, n in members.items() if hit[g])


def recall_by_kind(corpus: Corpus, predicted: list[Any]) -> dict[str, float]:
    """Per variant kind: the share of variants placed in the same predicted cluster as their base."""
    base_label = {g: p for g, p, k in zip(corpus.groups, predicted, corpus.kinds, strict=True) if k == "base"}
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for group, label, kind in zip(corpus.groups, predicted, corpus.kinds, strict=True):
        if kind != "base":
            total[kind] += 1
            found[kind] += label == base_label[group]
    return {kind: found[kind] / total[kind] for kind in sorted(total)}


# ---------------------------------------------------------------------------------------------------------------
# Reference: datasketch, one process


class UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def shingle_bytes(text: str) -> list[bytes]:
    """The same shingles as the Spark job: lowercased, split on ``\\W+``, word 5-grams joined by one space."""
    return [s.encode("utf-8") for s in shingles(text, NGRAM)]


def run_reference(texts: list[str], threshold: float, num_perm: int) -> dict[str, Any]:
    """MinHash signatures, LSH insert, a query per document, union-find over the answers: one cluster label each."""
    from datasketch import MinHash, MinHashLSH

    log(f"reference: {len(texts)} documents, threshold {threshold}, {num_perm} permutations")
    start = time.perf_counter()
    signatures = []
    for i, sig in enumerate(MinHash.generator((shingle_bytes(t) for t in texts), num_perm=num_perm), 1):
        signatures.append(sig)
        if i % 10_000 == 0:
            log(f"reference: {i} signatures")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    with lsh.insertion_session() as session:
        for i, sig in enumerate(signatures):
            session.insert(i, sig, check_duplication=False)
    clusters = UnionFind(len(texts))
    for i, sig in enumerate(signatures):
        for j in lsh.query(sig):
            clusters.union(i, j)
    labels = [clusters.find(i) for i in range(len(texts))]
    seconds = time.perf_counter() - start
    log(f"reference: done in {seconds:.1f} s (bands × rows = {lsh.b} × {lsh.r})")
    return {"labels": labels, "seconds": seconds, "bands": lsh.b, "rows": lsh.r}


# ---------------------------------------------------------------------------------------------------------------
# Spark: jobs.clean then jobs.dedup


def make_configs(threshold: float) -> tuple[Any, Any]:
    """CleanConfig without a tokenizer (where that setting exists) and DedupConfig with the benchmark's threshold."""
    from backforth.jobs.clean import CleanConfig
    from backforth.jobs.dedup import DedupConfig

    try:
        clean_cfg = CleanConfig(tokenizer=None)
    except TypeError:
        clean_cfg = CleanConfig()
    return clean_cfg, DedupConfig(ngram=NGRAM, threshold=threshold)


def timed_clean(spark: Any, docs: list[dict], clean_cfg: Any) -> dict[str, Any]:
    """Build and cache the input (untimed), then clean it; the kept documents are checkpointed for dedup."""
    from backforth.jobs.clean import clean_documents

    frame = as_spark_df(spark, docs).cache()
    frame.count()
    log("spark: cleaning")
    start = time.perf_counter()
    cleaned = clean_documents(frame, clean_cfg).localCheckpoint()
    kept_count = cleaned.where("drop_reason IS NULL").count()
    seconds = time.perf_counter() - start
    log(f"spark: clean kept {kept_count} of {len(docs)} in {seconds:.1f} s")
    reasons = {r["drop_reason"]: r["count"] for r in cleaned.groupBy("drop_reason").count().collect()}
    dropped = {r["doc_id"] for r in cleaned.where("drop_reason IS NOT NULL").select("doc_id").collect()}
    columns = ["doc_id", "text"] + (["n_words"] if "n_words" in cleaned.columns else [])
    kept = cleaned.where("drop_reason IS NULL").select(*columns).localCheckpoint()
    frame.unpersist()
    return {"kept": kept, "kept_count": kept_count, "dropped": dropped, "reasons": reasons, "seconds": seconds}


def timed_dedup(spark: Any, kept: Any, dedup_cfg: Any) -> dict[str, Any]:
    """Deduplicate the kept documents and collect the four result columns, all on the clock."""
    from backforth.jobs.dedup import deduplicate

    log("spark: deduplicating")
    start = time.perf_counter()
    result = deduplicate(spark, kept, dedup_cfg)
    if isinstance(result, tuple):  # (rows, signatures, stats) in versions that also return their signatures
        result = result[0]
    rows = result.select("doc_id", "cluster_id", "is_kept", "dup_reason").collect()
    seconds = time.perf_counter() - start
    log(f"spark: dedup of {len(rows)} documents in {seconds:.1f} s")
    return {"rows": rows, "seconds": seconds}


def run_spark(docs: list[dict], threshold: float, master: str) -> dict[str, Any]:
    """Both timed phases in a throw-away local session; every document gets a cluster label (dropped: its own)."""
    from backforth.config import Settings
    from backforth.spark import build_local_session

    clean_cfg, dedup_cfg = make_configs(threshold)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as data_dir:
        settings = Settings(data_dir=data_dir)
        settings.spark.master = master
        log(f"spark: starting a local session ({master})")
        spark = build_local_session(settings)
        try:
            clean = timed_clean(spark, docs, clean_cfg)
            dedup = timed_dedup(spark, clean["kept"], dedup_cfg)
        finally:
            spark.stop()
    cluster = {r["doc_id"]: r["cluster_id"] for r in dedup["rows"]}
    labels = [cluster.get(d["doc_id"], "single:" + d["doc_id"]) for d in docs]
    missing = sum(1 for d in docs if d["doc_id"] not in cluster and d["doc_id"] not in clean["dropped"])
    return {
        "labels": labels,
        "dropped_flags": [d["doc_id"] in clean["dropped"] for d in docs],
        "missing": missing,
        "clean_seconds": clean["seconds"],
        "dedup_seconds": dedup["seconds"],
        "kept_after_clean": clean["kept_count"],
        "drop_reasons": {str(k): v for k, v in clean["reasons"].items() if k is not None},
        "dup_reasons": dict(Counter(str(r["dup_reason"] or "kept") for r in dedup["rows"])),
    }


# ---------------------------------------------------------------------------------------------------------------
# Report


def summarise(args: argparse.Namespace, corpus: Corpus, spark: dict | None, ref: dict) -> dict[str, Any]:
    """All figures in one flat-ish dict (the JSON output); Spark figures are NaN with --skip-spark."""
    n = len(corpus.docs)
    ref_scores = pair_scores(ref["labels"], corpus.groups)
    out: dict[str, Any] = {
        "docs": n, "seed": args.seed, "threshold": args.threshold, "num_perm": args.num_perm,
        "groups": len(set(corpus.groups)), "true_pairs": ref_scores["true_pairs"],
        "ref": {**ref_scores, "seconds": ref["seconds"], "bands": ref["bands"], "rows": ref["rows"],
                "clusters": len(set(ref["labels"])), "recall_by_kind": recall_by_kind(corpus, ref["labels"])},
        "ref_docs_per_s": n / ref["seconds"],
    }  # fmt: skip
    if spark is None:
        return {**out, "docs_per_s": NAN, "clean_docs_per_s": NAN, "speed_ratio": NAN}
    scores = pair_scores(spark["labels"], corpus.groups)
    spark_info = {k: v for k, v in spark.items() if k not in ("labels", "dropped_flags")}
    out["spark"] = {
        **scores, **spark_info, "clusters": len(set(spark["labels"])),
        "pairs_with_dropped_doc": pairs_touching(corpus.groups, spark["dropped_flags"]),
        "recall_by_kind": recall_by_kind(corpus, spark["labels"]),
    }  # fmt: skip
    out["docs_per_s"] = n / spark["dedup_seconds"]
    out["clean_docs_per_s"] = n / spark["clean_seconds"]
    out["speed_ratio"] = out["docs_per_s"] / out["ref_docs_per_s"]
    return out


def print_report(result: dict[str, Any]) -> None:
    """A readable table, then the ``key=value`` line (always last)."""
    spark, ref = result.get("spark", {}), result["ref"]
    print(f"\ncorpus: {result['docs']} documents, {result['groups']} groups, {result['true_pairs']} true pairs")
    print(f"\n{'':<26} {'spark':>12} {'datasketch':>12}")
    rows = [
        ("precision", "precision", ".4f"), ("recall", "recall", ".4f"), ("F1", "f1", ".4f"),
        ("predicted pairs", "predicted_pairs", "d"), ("correct pairs", "true_positive_pairs", "d"),
        ("clusters", "clusters", "d"),
    ]  # fmt: skip
    for label, key, fmt in rows:
        left = format(spark[key], fmt) if key in spark else "-"
        print(f"{label:<26} {left:>12} {format(ref[key], fmt):>12}")
    dedup_s = f"{spark['dedup_seconds']:.2f}" if spark else "-"
    print(f"{'dedup seconds':<26} {dedup_s:>12} {ref['seconds']:>12.2f}")
    rate = f"{result['docs_per_s']:.1f}" if spark else "-"
    print(f"{'docs/s':<26} {rate:>12} {result['ref_docs_per_s']:>12.1f}")
    print("\nrecall by variant kind (variant in its base's cluster):")
    for kind, value in ref["recall_by_kind"].items():
        left = format(spark["recall_by_kind"][kind], ".3f") if spark else "-"
        print(f"  {kind:<24} {left:>12} {value:>12.3f}")
    print(f"\nreference LSH: {ref['bands']} bands × {ref['rows']} rows")
    if spark:
        print(f"spark clean: {spark['clean_seconds']:.2f} s, kept {spark['kept_after_clean']}, "
              f"dropped {spark['drop_reasons'] or 'none'}; true pairs touching a dropped doc: "
              f"{spark['pairs_with_dropped_doc']}; missing from dedup output: {spark['missing']}")  # fmt: skip
        print(f"spark dedup reasons: {spark['dup_reasons']}")
    print(key_values(result))


def key_values(result: dict[str, Any]) -> str:
    spark, ref = result.get("spark", {}), result["ref"]
    figures = [
        ("docs", result["docs"], "d"), ("f1", spark.get("f1", NAN), ".4f"),
        ("precision", spark.get("precision", NAN), ".4f"), ("recall", spark.get("recall", NAN), ".4f"),
        ("ref_f1", ref["f1"], ".4f"), ("ref_precision", ref["precision"], ".4f"),
        ("ref_recall", ref["recall"], ".4f"), ("docs_per_s", result["docs_per_s"], ".1f"),
        ("ref_docs_per_s", result["ref_docs_per_s"], ".1f"), ("speed_ratio", result["speed_ratio"], ".2f"),
        ("clean_docs_per_s", result["clean_docs_per_s"], ".1f"),
    ]  # fmt: skip
    return " ".join(f"{key}={format(value, fmt)}" for key, value, fmt in figures)


def without_nan(value: Any) -> Any:
    """NaN (a skipped phase) as JSON null."""
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000, help="corpus size N")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--threshold", type=float, default=0.6, help="Jaccard threshold, both implementations")
    parser.add_argument("--num-perm", type=int, default=128, help="datasketch permutations (reference only)")
    parser.add_argument("--master", default="local[*]", help="Spark master of the local session")
    parser.add_argument("--skip-spark", action="store_true", help="run only the datasketch reference")
    parser.add_argument("--out-json", help="also write every figure to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log(f"generating {args.docs} documents (seed {args.seed})")
    corpus = generate_labelled(args.docs, args.seed, progress=True)
    spark = None if args.skip_spark else run_spark(corpus.docs, args.threshold, args.master)
    ref = run_reference([d["text"] for d in corpus.docs], args.threshold, args.num_perm)
    result = summarise(args, corpus, spark, ref)
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as handle:
            json.dump(without_nan(result), handle, indent=2, default=str)
    print_report(result)


if __name__ == "__main__":
    main()
