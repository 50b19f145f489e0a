"""Generation throughput: the bare engine vs the Spark UDF path, same prompts, same seeds, one run.

    .venv/bin/python bench/generate.py --docs 32 --model smollm2-cpu

N real documents from the sample corpus (data/sample/source/corpus.yaml, English articles and technical pages,
cut to --max-chars) are backtranslated twice with the backtranslate prompt and per-row seeds:
1. through the engine directly, in this process (one ``engine.generate`` call, as a batch job would);
2. through the Spark path: a DataFrame of the same rows, the iterator pandas UDF of udfs/llm.py, inside a Spark
   Python worker (local mode, the profile's parallelism), with the engine built in that worker.
Both are timed warm: the engine start is measured separately (the UDF path's engine starts in a one-row warm-up job
and stays in the reused worker). Same seeds → the same outputs, so the token counts match and the ratio is a ratio
of wall times. The last line is key=value pairs: engine_tok_s, udf_tok_s, ratio (udf / engine), and the starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def documents(n: int, max_chars: int) -> list[tuple[str, str]]:
    """``n`` English documents (article and technical kinds), cycled if the corpus is smaller."""
    import yaml

    entries = yaml.safe_load((ROOT / "data/sample/source/corpus.yaml").read_text(encoding="utf-8"))
    usable = [e for e in entries if e.get("kind") in ("article", "technical") and e.get("lang") == "en"]
    out = []
    for i in range(n):
        e = usable[i % len(usable)]
        out.append((f"{e['id']}#{i // len(usable)}", e["text"][:max_chars]))
    return out


def seeds_for(ids: list[str], base: int) -> list[int]:
    import zlib

    return [zlib.crc32(f"{base}:{doc_id}".encode()) & 0x7FFFFFFF for doc_id in ids]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--model", default="smollm2-cpu", help="a profile in conf/models/")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-chars", type=int, default=3000, help="documents are cut to this many characters")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--out-json")
    args = ap.parse_args()

    from backforth.engines import Sampling, build_engine, load_profile
    from backforth.engines.udf import generate_batch
    from backforth.udfs.prompts import load_prompt

    profile = load_profile(args.model)
    template = load_prompt("backtranslate")
    sampling = Sampling(temperature=1.0, top_p=0.9, max_tokens=args.max_tokens, seed=1234)
    docs = documents(args.docs, args.max_chars)
    ids, texts = [d[0] for d in docs], [d[1] for d in docs]
    seeds = seeds_for(ids, sampling.seed)
    rows = [{"document": t} for t in texts]
    print(f"[bench] {len(docs)} documents, model {profile.name} ({profile.backend}), max_tokens {args.max_tokens}",
          file=sys.stderr)  # fmt: skip

    # 1. bare engine
    t0 = time.perf_counter()
    engine = build_engine(profile)
    engine_start = time.perf_counter() - t0
    generate_batch(engine, template, sampling, rows[:1], seeds[:1])  # warm-up request
    t0 = time.perf_counter()
    bare = generate_batch(engine, template, sampling, rows, seeds)
    engine_s = time.perf_counter() - t0
    engine.close()
    del engine
    bare_tokens = sum(r["prompt_tokens"] + r["output_tokens"] for r in bare)
    bare_out = sum(r["output_tokens"] for r in bare)
    print(f"[bench] engine: start {engine_start:.1f} s, {len(bare)} prompts in {engine_s:.1f} s, "
          f"{bare_out} output tokens", file=sys.stderr)  # fmt: skip

    # 2. Spark UDF path
    from pyspark.sql import functions as F

    from backforth.config import Settings, SparkConfig
    from backforth.engines.udf import make_generate_udf
    from backforth.spark import build_local_session

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        spark = build_local_session(Settings(data_dir=tmp, spark=SparkConfig(master=args.master)))
        parallelism = profile.parallelism or spark.sparkContext.defaultParallelism
        udf = make_generate_udf(profile, sampling, template)
        data = list(zip(ids, texts, seeds, strict=True))
        frame = spark.createDataFrame(data, "doc_id string, text string, seed long")

        def run(df):
            out = df.repartition(parallelism).select(udf(F.struct(F.col("text").alias("document")), "seed").alias("g"))
            return out.select("g.*").collect()

        t0 = time.perf_counter()
        run(frame.limit(1))  # starts the engine inside the Python worker, which Spark then reuses
        udf_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        through_spark = run(frame)
        udf_s = time.perf_counter() - t0
        spark.stop()
    udf_tokens = sum(r["prompt_tokens"] + r["output_tokens"] for r in through_spark)
    udf_out = sum(r["output_tokens"] for r in through_spark)
    print(f"[bench] udf: first job (engine start) {udf_start:.1f} s, {len(through_spark)} prompts in {udf_s:.1f} s, "
          f"{udf_out} output tokens", file=sys.stderr)  # fmt: skip
    same = sorted(r["text"] or "" for r in bare) == sorted(r["text"] or "" for r in through_spark)
    figures = {
        "docs": len(docs),
        "model": profile.name,
        "engine_tok_s": round(bare_tokens / engine_s, 1),
        "udf_tok_s": round(udf_tokens / udf_s, 1),
        "engine_out_tok_s": round(bare_out / engine_s, 1),
        "udf_out_tok_s": round(udf_out / udf_s, 1),
        "ratio": round((udf_tokens / udf_s) / (bare_tokens / engine_s), 3),
        "engine_start_s": round(engine_start, 1),
        "udf_first_job_s": round(udf_start, 1),
        "same_outputs": same,
    }
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":  # vLLM's CPU build spawns its engine process: the guard is required
    raise SystemExit(main())
