"""Token counts for the length filter: the generation model's own tokenizer, loaded once per Python worker.

``tokenizer`` is a path to a ``tokenizer.json`` (or a folder holding one, e.g. a saved transformers model), loaded
with the Rust ``tokenizers`` library. ``None`` falls back to an estimate of one token per four characters, recorded
as such in the ``token_method`` column so nobody mistakes it for a real count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backforth.cache import ProcessCache
from backforth.errors import BadPathError

CHARS_PER_TOKEN_ESTIMATE = 4  # English prose with BPE vocabularies of 32k–128k entries runs 3.5–4.5
_TOKENIZERS: ProcessCache[Any] = ProcessCache("tokenizers")  # per Python worker: reused by later tasks


def tokenizer_file(ref: str) -> Path:
    """The tokenizer.json that ``ref`` names (a file, or a folder containing one)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise BadPathError(f"tokenizer {ref}: no tokenizer.json there (set job.tokenizer to a model folder)")
    return path


def load_tokenizer(ref: str) -> Any:
    """The cached ``tokenizers.Tokenizer`` for ``ref``."""

    def load() -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tokenizer_file(ref)))

    return _TOKENIZERS.get_or_create(ref, load)


def count_tokens(texts: list[str], ref: str | None, max_chars: int) -> tuple[list[int], str]:
    """Token counts of ``texts`` (each cut at ``max_chars`` first: beyond that a document fails anyway)."""
    if ref is None:
        return [-(-len(t) // CHARS_PER_TOKEN_ESTIMATE) for t in texts], f"estimate_chars_div_{CHARS_PER_TOKEN_ESTIMATE}"
    tokenizer = load_tokenizer(ref)
    encoded = tokenizer.encode_batch([t[:max_chars] for t in texts], add_special_tokens=False)
    return [len(e.ids) for e in encoded], f"tokenizer:{tokenizer_file(ref).parent.name}"
