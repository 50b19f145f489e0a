"""The README.md dataset card written beside each exported training set (and each of its subsets)."""

from __future__ import annotations

from typing import Any


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
    return f"""# backforth training set `{title}`{f" (subset {size})" if size is not None else ""}

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
