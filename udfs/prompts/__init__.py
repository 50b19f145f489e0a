"""The project's prompt files: ``<name>.yaml`` in this folder (format: backforth.prompts)."""

from __future__ import annotations

from pathlib import Path

from backforth.prompts import SLOT, PromptTemplate
from backforth.prompts import load_prompt as _load

HERE = Path(__file__).resolve().parent

__all__ = ["HERE", "SLOT", "PromptTemplate", "load_prompt"]


def load_prompt(name: str, folder: Path | None = None) -> PromptTemplate:
    """Read ``<folder or this folder>/<name>.yaml``."""
    return _load(name, folder or HERE)
