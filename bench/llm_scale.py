"""How busy the GPUs of a cluster stay during an LLM step: the backtranslate step on a real Spark standalone cluster
on loopback, N one-core workers each holding one GPU through Spark's resource scheduling (a discovery script per
worker), every GPU played by the ``sim`` engine (``conf/models/sim-h100.yaml``: the time a continuous-batching
server would take, spent sleeping; no CPU, no device).

For each N (default 4 and 8) one child process starts the cluster and one driver session, writes ~20,000 kept
documents (real sample pages, each used many times under its own doc_id, so prompt lengths follow real pages and
output lengths the engine's long tail), then runs the step twice into separate tables:

- ``baseline``: the previous defaults, ``shard_rows=256`` and one shard at a time, on the first ``--baseline-rows``
  (2,560: ten shards; its figures are rates, and all 20,000 rows would take it over half an hour here);
- ``new``: today's defaults, the shard size derived from the cluster and two shards in flight.

Figures per run: ``engine_busy_share`` = Σ engine busy seconds ÷ (generation wall × N), from the engines' own log;
``rows_per_s``; ``commits`` (Delta appends); ``job_s`` (the whole job, MLflow and outcome counting included). The
last line holds the key=value figures (and ``scaling_4_to_8``, the throughput ratio) for both variants.

    .venv/bin/python bench/llm_scale.py                      # N = 4 and 8, 20,000 rows (about 15 minutes here)
    .venv/bin/python bench/llm_scale.py --rows 4000 --workers 4 --time-scale 0.25    # a quick look

``--time-scale`` shrinks every simulated second (and so the run) by that factor; Spark's own overheads do not
shrink, so a smaller scale makes the figures pessimistic, never optimistic.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's backforth, not another one the venv may point to
# Backtranslated instructions are short: the papers' mean instruction length is 69 tokens. A lognormal of median 55
# and log-standard-deviation 0.7 has mean 55 * exp(0.7**2 / 2) = 70 and p99 = 55 * exp(2.33 * 0.7) = 280, so about
# 4 % of rows run into the step's 128-token cap: the long tail the engine's batches wait on.
INSTRUCTION_LENGTHS = {"output_median_tokens": 55, "output_sigma": 0.7}
SAMPLE = REPO / "data" / "sample"


def sample_texts(min_words: int = 20) -> list[str]:
    """The bundled sample's page texts (the JSONL pages and the Dolma shard): real pages, long-tailed lengths."""
    texts = [json.loads(x).get("content") for x in (SAMPLE / "web.jsonl").read_text().splitlines() if x.strip()]
    with gzip.open(SAMPLE / "dolma" / "part-0000.json.gz", "rt", encoding="utf-8") as fh:
        texts += [json.loads(x).get("text") for x in fh if x.strip()]
    return [t for t in texts if isinstance(t, str) and len(t.split()) >= min_words]


def child(args: argparse.Namespace) -> dict:
    """One cluster of ``args.one`` workers: both variants, figures as a dict."""
    from dataclasses import replace

    from backforth.config import Settings, SparkConfig, TablesConfig
    from backforth.devcluster import LoopbackCluster
    from backforth.engines.profiles import load_profile
    from backforth.registry import get_job, load_jobs
    from backforth.runner import run_job
    from backforth.spark import build_local_session

    n = args.one
    root = Path(args.work) / f"n{n}"
    texts = sample_texts()
    with LoopbackCluster(root / "cluster", workers=n, cores_per_worker=1, memory_per_worker="1g",
                         gpus_per_worker=1) as cluster:  # fmt: skip
        conf = {
            **load_profile(args.profile).spark,  # what the profile asks of a cluster (GPU per executor, worker reuse)
            "spark.executor.cores": "1",
            "spark.executor.memory": "512m",
            "spark.cores.max": str(n),
            "spark.default.parallelism": str(n),  # the baseline's tasks per shard: one per executor
            "spark.sql.shuffle.partitions": str(n),
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        }
        settings = Settings(data_dir=str(root / "data"), tables=TablesConfig(schema="bench"),
                            spark=SparkConfig(master=cluster.master, driver_memory="3g", conf=conf))  # fmt: skip
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        spark = build_local_session(settings)
        spark.sql("CREATE SCHEMA IF NOT EXISTS bench")
        rows = [(f"bench-{i:06d}", texts[i % len(texts)]) for i in range(args.rows)]
        docs = spark.createDataFrame(rows, "doc_id string, text string").repartition(n)
        docs.write.format("delta").mode("overwrite").saveAsTable("bench.docs_clean")
        spark.table("bench.docs_clean").selectExpr("doc_id", "true AS is_kept").write.format("delta").mode(
            "overwrite"
        ).saveAsTable("bench.docs_dedup")
        spark.range(n * 4, numPartitions=n * 4).selectExpr("sum(id)").collect()  # every executor up before a clock

        load_jobs()
        spec = get_job("backtranslate")
        base_cfg = spec.config_cls(model=args.profile)
        variants = {"baseline": {"shard_rows": 256, "shards_in_flight": 1, "limit": args.baseline_rows}, "new": {}}
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
        out: dict = {"workers": n, "rows": args.rows, "documents": len(texts)}
        for name, knobs in variants.items():
            log_dir = root / f"engine-log-{name}"
            options = {"options": {"log_dir": str(log_dir), "time_scale": args.time_scale, **INSTRUCTION_LENGTHS}}
            settings.job = replace(base_cfg, output_table=f"instructions_{name}", model_options=options, **knobs)
            rows_run = knobs.get("limit") or args.rows
            print(f"[n={n}] {name}: running backtranslate on {rows_run} rows ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            outcome = run_job(spec, settings, spark)
            job_s = time.perf_counter() - started
            out[name] = figures(outcome.metrics, log_dir, n, job_s)
            print(f"[n={n}] {name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
        spark.stop()
    return out


def figures(metrics: dict, log_dir: Path, n: int, job_s: float) -> dict:
    """Busy share and throughput of one run, from the engines' logs and the job's metrics."""
    events = [json.loads(x) for p in log_dir.glob("engine-*.jsonl") for x in p.read_text().splitlines()]
    calls = [e for e in events if e.get("event") == "generate"]
    busy = sum(float(e.get("busy_s", 0.0)) for e in calls)
    wall = float(metrics["generation_s"])
    gpus = {g for e in calls for g in e.get("gpus") or []}
    return {
        "engine_busy_share": round(busy / (wall * n), 3),
        "rows": int(metrics["docs_rows"]),
        "rows_per_s": round(metrics["docs_rows"] / wall, 2),
        "commits": int(metrics["shards"]),
        "shard_rows": int(metrics["shard_rows"]),
        "engine_calls": len(calls),
        "mean_call_rows": round(sum(e["n"] for e in calls) / max(1, len(calls)), 1),
        "gpus_seen": len(gpus),
        "generation_s": round(wall, 1),
        "job_s": round(job_s, 1),
        "busy_s": round(busy, 1),
        "engine_busy_share_job": round(busy / (job_s * n), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="4,8", help="cluster sizes, comma-separated (default 4,8)")
    parser.add_argument("--rows", type=int, default=20000, help="pending documents (default 20000)")
    parser.add_argument("--baseline-rows", type=int, default=2560,
                        help="rows the baseline generates (default 2560: ten of its 256-row shards; its figures are "
                        "rates, and all 20,000 would take it over half an hour here)")  # fmt: skip
    parser.add_argument("--profile", default="sim-h100", help="model profile of the simulated GPU (default sim-h100)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds → slept seconds")
    parser.add_argument("--variants", default="baseline,new", help="which runs (default both; new alone for a look)")
    parser.add_argument("--out-json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: one cluster size
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(child(args)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="backforth-llm-scale-"))
    results = {}
    for n in [int(x) for x in args.workers.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(n), "--work", str(work), "--rows", str(args.rows),
               "--profile", args.profile, "--time-scale", str(args.time_scale),
               "--baseline-rows", str(args.baseline_rows), "--variants", args.variants]  # fmt: skip
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"cluster of {n} failed (logs under {work})", file=sys.stderr)
            return done.returncode
        results[n] = json.loads(done.stdout.strip().splitlines()[-1])

    print(
        f"\nbacktranslate, {args.rows} rows ({args.baseline_rows} for the baseline), profile {args.profile}, "
        f"time scale {args.time_scale}"
    )
    print(f"{'workers':>7} {'variant':>8} {'busy share':>10} {'rows/s':>8} {'commits':>7} {'shard':>6} "
          f"{'calls':>6} {'rows/call':>9} {'gen s':>7} {'job s':>7}")  # fmt: skip
    for n, res in results.items():
        for variant in [v for v in ("baseline", "new") if v in res]:
            f = res[variant]
            print(f"{n:>7} {variant:>8} {f['engine_busy_share']:>10.3f} {f['rows_per_s']:>8.1f} {f['commits']:>7} "
                  f"{f['shard_rows']:>6} {f['engine_calls']:>6} {f['mean_call_rows']:>9.1f} "
                  f"{f['generation_s']:>7.1f} {f['job_s']:>7.1f}")  # fmt: skip
    line = {}
    sizes = sorted(results)
    for variant in [v for v in ("baseline", "new") if all(v in results[n] for n in sizes)]:
        for n in sizes:
            f = results[n][variant]
            for key in ("engine_busy_share", "rows_per_s", "commits"):
                line[f"{variant}.{key}@{n}"] = f[key]
        if len(sizes) >= 2:
            lo, hi = sizes[0], sizes[-1]
            ratio = results[hi][variant]["rows_per_s"] / results[lo][variant]["rows_per_s"]
            line[f"{variant}.scaling_{lo}_to_{hi}"] = round(ratio, 2)
    if args.out_json:
        args.out_json.write_text(json.dumps({"results": results, "line": line}, indent=2))
    print(" ".join(f"{k}={v}" for k, v in line.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
