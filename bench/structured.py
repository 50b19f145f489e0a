"""Structured outputs vs free text, same documents, same model: what constrained decoding changes in each LLM step.

    .venv/bin/python bench/structured.py [--model smollm2-cpu] [--data /tmp/bf-structured] [--out result.json]

On the sample corpus (data/sample, the demo's 105 documents) with the local environment's settings, in one process
and one Spark session: ingest → clean → dedup once, then each LLM step twice or more over the *same* input rows,
free and constrained (backforth.structured), every variant a step version of its own in the same tables:

- backtranslate: free vs ``structured: line`` → accepted share (rows that pass the output checks) and truncation;
- score, all judging the free backtranslation's pairs plus ``--controls`` control pairs: free text vs
  ``reasoning`` vs ``digit``, and the logprob mode for reference → valid score rate and the sanity AUC (matched vs
  control pairs; 0.5 = chance);
- rewrite, both answering the pairs one filter run kept (top half by the logprob judge, the demo's setting): free vs
  ``structured: tags`` → accepted (ok) rate, truncation.

Prints a Markdown table (the README's) and, last, key=value figures. The embedded SmolLM2-135M demonstrates the
mechanism; what the figures say about a capable model is nothing: rerun with a GPU profile for that.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(f"[structured {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Runner:
    """Runs jobs in one Spark session on one data folder, with the local environment and --set style overrides."""

    def __init__(self, data: Path, model: str) -> None:
        self.data, self.model, self.spark = data, model, None

    def __call__(self, step: str, *overrides: str) -> Any:
        from backforth.config import load_settings
        from backforth.registry import get_job
        from backforth.runner import run_job
        from backforth.spark import get_spark

        spec = get_job(step)
        model = [f"job.model={self.model}"] if step in ("backtranslate", "score", "rewrite") else []
        settings = load_settings(step, spec.config_cls, env="local",
                                 overrides=[f"data_dir={self.data}", *model, *overrides])  # fmt: skip
        self.spark = self.spark or get_spark(settings)
        started = time.perf_counter()
        outcome = run_job(spec, settings, self.spark)
        log(f"{step} {' '.join(overrides)}: {time.perf_counter() - started:.0f} s")
        return outcome


def share(metrics: dict[str, float], *keys: str) -> float:
    rows = sum(v for k, v in metrics.items() if k.startswith("status."))
    return round(sum(metrics.get(f"status.{k}", 0) for k in keys) / rows, 4) if rows else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-cpu", help="a profile in conf/models/ for every LLM step")
    ap.add_argument("--data", type=Path, help="data folder (default: a new temporary one)")
    ap.add_argument("--controls", type=int, default=40, help="control pairs of the judge's sanity AUC")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    data = args.data or Path(tempfile.mkdtemp(prefix="bf-structured-"))
    run = Runner(data, args.model)
    started = time.perf_counter()
    for step in ("ingest", "clean", "dedup"):
        run(step)

    result: dict[str, dict[str, Any]] = {}
    bt = {s: run("backtranslate", f"job.structured={s}") for s in ("null", "line")}
    free_bt = bt["null"].tags["backforth.step_version"]
    for name, outcome in bt.items():
        m = outcome.metrics
        result[f"backtranslate/{name}"] = {"accepted_share": m.get("accepted_share"),
                                           "truncated_share": m.get("truncated_share")}  # fmt: skip

    judges = {"text/null": ("text", "null"), "text/reasoning": ("text", "reasoning"), "text/digit": ("text", "digit"),
              "logprob": ("logprob", "null")}  # fmt: skip
    scored = {}
    for name, (mode, structured) in judges.items():
        scored[name] = run("score", f"job.mode={mode}", f"job.structured={structured}", f"job.input_version={free_bt}",
                           f"job.sanity_pairs={args.controls}")  # fmt: skip
        m = scored[name].metrics
        result[f"score/{name}"] = {"valid_rate": m.get("valid_rate"), "sanity_auc": m.get("sanity_auc"),
                                   "truncated_share": m.get("truncated_share")}  # fmt: skip

    kept = run("filter", f"job.input_version={scored['logprob'].tags['backforth.step_version']}")
    filtered = kept.tags["backforth.filter_version"]
    for structured in ("null", "tags"):
        m = run("rewrite", f"job.structured={structured}", f"job.input_version={filtered}").metrics
        statuses = {k[7:]: v for k, v in m.items() if k.startswith("status.")}
        result[f"rewrite/{structured}"] = {
            "ok_rate": share(m, "ok"),
            "accepted_share": share(m, "ok", "ok_unclosed", "ok_untagged"),
            "truncated_share": m.get("truncated_share"),
            "statuses": statuses,
        }

    minutes = (time.perf_counter() - started) / 60
    print(table(result, args.model))
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "minutes": round(minutes, 1), "result": result},
                                       indent=2, default=str))  # fmt: skip
    figures = {f"{k.replace('/', '.')}.{f}": v for k, row in result.items() for f, v in row.items() if f != "statuses"}
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" minutes={minutes:.1f}")
    return 0


def table(result: dict[str, dict[str, Any]], model: str) -> str:
    def fmt(value: Any) -> str:
        return "–" if value is None or value != value else f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [f"| step ({model}) | variant | figure | value | cut at cap |", "|---|---|---|---|---|"]
    for key, row in result.items():
        step, variant = key.split("/", 1)
        for figure, value in row.items():
            if figure in ("truncated_share", "statuses"):
                continue
            lines.append(f"| {step} | {variant.replace('null', 'free')} | {figure} | {fmt(value)} | "
                         f"{fmt(row.get('truncated_share'))} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
