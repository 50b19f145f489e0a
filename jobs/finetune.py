"""Fine-tune the backward (response → instruction) and forward models on seed_pairs; register them in MLflow.

Input: ``seed_pairs`` at one Delta version (the current one unless ``input_version`` is set). For each direction:
supervised fine-tuning with transformers (``backforth.finetune``: loss on output tokens only, chat template or plain
format, seed fixed), loss per step streamed to this job's MLflow run (``<direction>.loss``), then the folder is logged
as an MLflow model (transformers flavor) and registered (``backforth-backward`` / ``backforth-forward``) with an alias
(``candidate``); the version's tags name the seed table's Delta version, base model, seed, preset and losses.
A re-run with the same settings, base model and seed data reuses the version it registered (``retrain: true`` trains
again). The backward model is trained on the backtranslate job's own prompt, so it sees at generation time exactly
the prompt it was trained on.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from backforth import crash
from backforth.config import ConfigError
from backforth.errors import MissingInputError
from backforth.finetune import TrainResult, TrainSettings, cpu_preset, fingerprint, paper_preset, resolve_base
from backforth.registry import JobResult, job
from backforth.tables import qualify, quote, table_exists, table_version

log = logging.getLogger("backforth.finetune")
FINGERPRINT_TAG = "backforth.fingerprint"


@dataclass
class FinetuneConfig:
    input_table: str = "seed_pairs"
    input_version: int | None = None  # Delta version of the seed table to train on (null = the current one)
    directions: list[Literal["backward", "forward"]] = field(default_factory=lambda: ["backward", "forward"])
    preset: str = "cpu"  # a key of presets
    presets: dict[str, TrainSettings] = field(default_factory=lambda: {"cpu": cpu_preset(), "paper": paper_preset()})
    backward_prompt: str | None = "backtranslate"  # udfs/prompts/<name>.yaml around the response; null = bare text
    forward_prompt: str | None = None  # null: the instruction alone is the user message
    limit: int | None = None  # train on at most this many seed pairs (smallest pair_id first)
    backward_name: str = "backforth-backward"  # registered model names (Unity Catalog: catalog.schema.name)
    forward_name: str = "backforth-forward"
    alias: str | None = "candidate"  # set on the new (or reused) version
    retrain: bool = False  # false: reuse a version registered from the same settings, base model and data
    output_dir: str | None = None  # local training folders (null: <data_dir>/finetune); removed once registered
    keep_output: bool = False


def settings_for(cfg: FinetuneConfig) -> TrainSettings:
    if cfg.preset not in cfg.presets:
        raise ConfigError(f"job.preset: {cfg.preset!r} is not one of the presets ({', '.join(sorted(cfg.presets))})")
    return cfg.presets[cfg.preset]


def read_pairs(spark: Any, fqn: str, version: int, limit: int | None) -> list[dict[str, str]]:
    df = spark.sql(f"SELECT pair_id, instruction, response FROM {quote(fqn)} VERSION AS OF {version}")
    df = df.orderBy("pair_id")
    if limit is not None:
        df = df.limit(limit)
    return [r.asDict() for r in df.collect()]


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("transformers", "torch", "accelerate", "safetensors")]


def loss_figure(curves: dict[str, list[float]], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=110)
    ax = figure.subplots()
    for name, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, marker="o", label=name)
    ax.set(xlabel="optimizer step", ylabel="loss (output tokens)", title=title)
    ax.legend()
    figure.tight_layout()
    return figure


@job("finetune", config=FinetuneConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Fine-tune and register each direction's model (or reuse the version registered from the same inputs)."""
    import mlflow

    from backforth import finetune
    from backforth.registered_models import find_version, log_and_register, set_alias
    from backforth.udfs.prompts import load_prompt

    cfg: FinetuneConfig = settings.job
    train = settings_for(cfg)
    fqn = qualify(settings, cfg.input_table)
    if not table_exists(spark, fqn):
        raise MissingInputError(f"{fqn} is missing", "seed")
    version = cfg.input_version if cfg.input_version is not None else table_version(spark, fqn)
    dataset_ref = f"{fqn}@v{version}"
    pairs = read_pairs(spark, fqn, version, cfg.limit)
    if not pairs:
        raise MissingInputError(f"{dataset_ref} has no pairs: run `backforth seed` with inputs that yield some")
    dataset = mlflow.data.load_delta(table_name=fqn, version=str(version), name=fqn, digest=dataset_ref)
    base_path, base_identity = resolve_base(train.base_model)
    run_id = mlflow.active_run().info.run_id if mlflow.active_run() else "no-run"
    root = Path(cfg.output_dir) if cfg.output_dir else settings.data_path / "finetune"
    metrics: dict[str, float] = {"seed_pairs": len(pairs), "seed_table_version": version}
    tags = {"backforth.dataset": dataset_ref, "backforth.finetune_preset": cfg.preset,
            "backforth.base_model": base_identity, "backforth.seed": str(train.seed)}  # fmt: skip
    curves: dict[str, list[float]] = {}
    for direction in cfg.directions:
        name = cfg.backward_name if direction == "backward" else cfg.forward_name
        prompt_name = cfg.backward_prompt if direction == "backward" else cfg.forward_prompt
        template = load_prompt(prompt_name) if prompt_name else None
        prompt_tag = template.tag if template else "none"
        fp = fingerprint(direction, train, base_identity, dataset_ref, prompt_tag, cfg.limit)
        existing = None if cfg.retrain else find_version(name, FINGERPRINT_TAG, fp)
        if existing is not None:
            set_alias(name, cfg.alias, existing.version)
            log.info("%s: reusing %s version %s (same settings and data; retrain=true trains again)",
                     direction, name, existing.version)  # fmt: skip
            metrics.update({f"{direction}.reused": 1, f"{direction}.version": int(existing.version)})
            tags[f"backforth.model_version.{direction}"] = f"{name}/{existing.version}"
            continue

        def stream(step: int, values: dict[str, float], direction: str = direction) -> None:
            mlflow.log_metrics({f"{direction}.{k}": v for k, v in values.items()}, step=step)

        out_dir = root / run_id / direction
        result: TrainResult = finetune.train(base_path, pairs, direction, train, out_dir, template, on_step=stream)
        curves[direction] = result.losses
        version_tags = {
            FINGERPRINT_TAG: fp,
            "backforth.direction": direction,
            "backforth.dataset": dataset_ref,
            "backforth.base_model": base_identity,
            "backforth.preset": cfg.preset,
            "backforth.prompt_format": train.prompt_format,
            "backforth.prompt": prompt_tag,
            "backforth.seed": str(train.seed),
            "backforth.train_examples": str(result.examples),
            "backforth.steps": str(result.steps),
            "backforth.first_loss": f"{result.first_loss:.4f}",
            "backforth.last_loss": f"{result.last_loss:.4f}",
        }
        what = "response → instruction" if direction == "backward" else "instruction → response"
        ref = log_and_register(
            out_dir,
            artifact_name=f"{direction}-model",
            registered_name=name,
            alias=cfg.alias,
            tags=version_tags,
            params={**asdict(train), "direction": direction, "dataset": dataset_ref},
            pip_requirements=pip_requirements(),
            description=f"{direction} model ({what}) fine-tuned by backforth on {dataset_ref}, preset {cfg.preset}",
            dataset=dataset,
            model_metrics={"train_loss_first": result.first_loss, "train_loss_last": result.last_loss},
        )
        if not cfg.keep_output:
            shutil.rmtree(out_dir, ignore_errors=True)  # the registry holds the copy
        log.info("%s: registered %s (alias %s), loss %.3f → %.3f in %d steps, %.0f s",
                 direction, ref.uri, cfg.alias, result.first_loss, result.last_loss, result.steps,
                 result.seconds)  # fmt: skip
        tags[f"backforth.model_version.{direction}"] = f"{name}/{ref.version}"
        crash.point("finetune.after_direction")
        metrics.update({
            f"{direction}.version": int(ref.version),
            f"{direction}.reused": 0,
            f"{direction}.examples": result.examples,
            f"{direction}.steps_total": result.steps,
            f"{direction}.examples_seen": result.examples_seen,
            f"{direction}.target_tokens_total": result.target_tokens,
            f"{direction}.first_loss": round(result.first_loss, 4),
            f"{direction}.last_loss": round(result.last_loss, 4),
            f"{direction}.train_s": round(result.seconds, 1),
            **{f"{direction}.skipped.{k}": v for k, v in result.skipped.items()},
        })  # fmt: skip
    figures = {"finetune_loss.png": loss_figure(curves, f"Fine-tuning loss, preset {cfg.preset}")} if curves else {}
    return JobResult(metrics, figures=figures, tags=tags)
