"""The clean step's throughput on real documentation pages: clean-v2's way (quality statistics as Spark column
expressions, repetition with Counters, whole-document token encoding) against the one Python pass per document,
side by side in one Spark session on the same pages, with their outputs compared value for value.

The pages are bench/realdocs.py's (real manuals and man pages, ~10 KB each; built and cached on first use). Each
implementation runs ``rounds`` times, alternating, each time until its output is checkpointed and counted; the
figure is pages over the median time. The first round of each includes starting Python workers and loading the
language model and tokenizer, as a job does.

    .venv/bin/python bench/clean_speed.py                 # 3,000 pages, 3 rounds, local[2]
    .venv/bin/python bench/clean_speed.py --docs 6000 --rounds 5

The last line: ``docs=… cores=… clean_docs_per_s_before=… clean_docs_per_s_after=… speedup=… mismatched=…``
(mismatched: documents whose rows differ; the reference carries clean-v3's one intended change, lines compared
trimmed for dup_lines, which costs nothing either way).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)

    from realdocs import cache_dir, real_pages

    from backforth.config import Settings
    from backforth.jobs.clean import CleanConfig, clean_documents
    from backforth.spark import build_local_session

    pages = [p["text"] for p in real_pages(cache_dir()) if "/translations/" not in p["path"]][: args.docs]
    mean_k = sum(map(len, pages)) / len(pages) / 1000
    print(f"[clean_speed] {len(pages)} real pages, mean {mean_k:.1f} k characters", file=sys.stderr)
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="clean-speed-"))
    settings.spark.master = f"local[{args.cores}]"
    spark = build_local_session(settings)
    docs = spark.createDataFrame([(str(i), t) for i, t in enumerate(pages)], "doc_id string, text string")
    docs = docs.repartition(args.cores * 4).localCheckpoint()
    docs.count()
    cfg = CleanConfig()
    times: dict[str, list[float]] = {"reference": [], "fast": []}
    outputs = {}
    for round_no in range(args.rounds):
        for impl in ("reference", "fast") if round_no % 2 == 0 else ("fast", "reference"):
            started = time.perf_counter()
            out = clean_documents(docs, cfg, impl=impl).drop("cleaned_at").localCheckpoint()
            out.count()
            times[impl].append(time.perf_counter() - started)
            print(f"[clean_speed] round {round_no + 1} {impl}: {times[impl][-1]:.1f} s", file=sys.stderr)
            outputs[impl] = out
    before = {r["doc_id"]: r.asDict(recursive=True) for r in outputs["reference"].collect()}
    after = {r["doc_id"]: r.asDict(recursive=True) for r in outputs["fast"].collect()}
    mismatched = sum(1 for k in before if before[k] != after.get(k))
    rate = {impl: len(pages) / statistics.median(t) for impl, t in times.items()}
    print(f"{'':10s} {'median s':>9s} {'docs/s':>8s}")
    for impl, label in (("reference", "clean-v2"), ("fast", "clean-v3")):
        print(f"{label:10s} {statistics.median(times[impl]):9.1f} {rate[impl]:8.1f}")
    print(f"docs={len(pages)} cores={args.cores} clean_docs_per_s_before={rate['reference']:.1f} "
          f"clean_docs_per_s_after={rate['fast']:.1f} speedup={rate['fast'] / rate['reference']:.2f} "
          f"mismatched={mismatched}")  # fmt: skip
    spark.stop()


if __name__ == "__main__":
    main()
