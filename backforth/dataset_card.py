"""The README.md dataset card written beside each exported training set (and each of its subsets)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]  # fmt: skip


def size_category(rows: int) -> str:
    """The Hub's size category of a dataset of ``rows`` rows.

    >>> size_category(41), size_category(25_600), size_category(2_000_000_000)
    ('n<1K', '10K<n<100K', 'n>1B')
    """
    return next((label for limit, label in SIZE_CATEGORIES if rows < limit), "n>1B")


def hub_header(mixture: dict[tuple[str, str], int], cfg: Any, title: str) -> str:
    """The YAML front matter the Hugging Face Hub reads from a dataset card: license, language, task, size, and the
    train / validation files (splits without rows left out), so ``load_dataset("<repo or folder>")`` finds them."""
    import yaml

    splits = [s for s in ("train", "validation") if sum(v for (_, sp), v in mixture.items() if sp == s)]
    header = {
        "pretty_name": f"backforth training set {title}",
        "license": cfg.license,
        "language": list(cfg.languages),
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "instruction-tuning", "backforth"],
        "size_categories": [size_category(sum(mixture.values()))],
        "configs": [
            {"config_name": "default", "data_files": [{"split": s, "path": f"jsonl/{s}/*.json"} for s in splits]}
        ],  # fmt: skip
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n"


def dataset_card(
    counts: dict[str, int],
    mixture: dict[tuple[str, str], int],
    cfg: Any,
    version: str,
    note: str,
    size: int | None = None,
    dropped: dict[str, int] | None = None,
    seed_note: str = "",
) -> str:
    """Markdown for one set: ``mixture`` is ``{(origin, split): pairs}`` (origin generated | seed), ``counts`` the
    run's funnel, ``cfg`` the export's settings (ExportConfig), ``size`` the subset's size (None: the full set),
    ``dropped`` the pairs dropped at export per reason."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())

    def n(origin: str | None = None, split: str | None = None) -> int:
        return sum(v for (o, s), v in mixture.items() if origin in (None, o) and split in (None, s))

    total, seeds = n(), n("seed")
    share = f"{seeds / total:.1%}" if total else "0%"
    title = cfg.name or cfg.kind
    scope = (
        f"Subset of {size} generated pairs: the {size} best of the full set (highest judge score, then a hash of the "
        f"pair id), so every smaller subset is inside every larger one."
        if size is not None
        else "The full set: every accepted pair of the run that was not dropped."
    )
    drops = "".join(f"\n| {reason} | {k} |" for reason, k in (dropped or {}).items())
    heading = f"# backforth training set `{title}`" + (f" (subset {size})" if size is not None else "")
    return (
        hub_header(mixture, cfg, title)
        + f"""{heading}

Instruction-tuning pairs made with instruction back-and-forth translation by backforth: web documents were
backtranslated into instructions, judged, filtered, and the documents {
            "rewritten into" if cfg.kind == "rewrite" else "replaced by distilled"
        } assistant answers; mixed with human-written seed pairs as the papers mix them. Export version `{version}`.
{scope}

**Model note.** {note or "See the MLflow runs for the models that produced these pairs."}

## Mixture
| part | tag appended to the instruction | train | validation | total |
|---|---|---|---|---|
| generated ({cfg.kind}) | {cfg.tag or "(none)"} | {n("generated", "train")} | {n("generated", "validation")} | {
            n("generated")
        } |
| seed | {cfg.seed.tag or "(none)"} | {n("seed", "train")} | {n("seed", "validation")} | {seeds} |
| **all** | | {n(split="train")} | {n(split="validation")} | {total} |

Seed pairs are {share} of the set ({
            "every seed pair is included" if cfg.seed.share is None else f"configured share: {cfg.seed.share:.1%}"
        }).{f" {seed_note}" if seed_note else ""}

## Files
- `jsonl/train/*.json`, `jsonl/validation/*.json`: one JSON object per line with `messages` (user, assistant) and
  provenance fields; `datasets.load_dataset("json", data_files={{"train": "jsonl/train/*.json"}})`.
- `parquet/train/*.parquet`, `parquet/validation/*.parquet`: the same rows.

## Dropped at export
| reason | pairs |
|---|---|{drops or chr(10) + "| (none) | 0 |"}

## Counts per stage
| stage | rows |
|---|---|
{rows}
"""
    )


def push(folder: Path, repo: str, private: bool, token: str | None, version: str) -> None:
    """Upload ``folder`` (files, cards, subsets; Spark's marker files left out) to the Hub dataset ``repo`` in one
    commit. Not tested against the Hub here (no network to it): the README says so."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                             commit_message=f"backforth export {version}",
                             ignore_patterns=["**/_SUCCESS", "**/.*", "_SUCCESS", ".*"])  # fmt: skip
    logging.getLogger("backforth.export").info("pushed %s to the Hub dataset %s (%s)", folder, repo,
                                               getattr(info, "commit_url", info))  # fmt: skip
