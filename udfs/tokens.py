"""Token counts for the length filter: the generation model's own tokenizer, loaded once per Python worker.

``tokenizer`` is a path to a ``tokenizer.json`` (or a folder holding one, e.g. a saved transformers model), loaded
with the Rust ``tokenizers`` library. ``None`` falls back to an estimate of one token per four characters, recorded
as such in the ``token_method`` column so nobody mistakes it for a real count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backforth.cache import ProcessCache
from backforth.errors import BadPathError

CHARS_PER_TOKEN_ESTIMATE = 4  # English prose with BPE vocabularies of 32k–128k entries runs 3.5–4.5
_TOKENIZERS: ProcessCache[Any] = ProcessCache("tokenizers")  # per Python worker: reused by later tasks
_COUNTERS: ProcessCache[Any] = ProcessCache("token-counters")
# GPT-2's pre-tokenizer split, which a byte-level BPE with use_regex applies before merging (tokenizers' ByteLevel)
BYTE_LEVEL_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PIECE_CACHE_LIMIT = 500_000  # distinct pieces remembered per Python worker (~60 MB); then the memo starts over


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


class PieceCounter:
    """Exact token counts for a byte-level BPE tokenizer, ~3× faster than encoding (bench/README.md). Such a
    tokenizer splits the text into pieces (words with their leading space, numbers, punctuation runs, spaces) and
    merges each piece on its own, so a document's count is the sum of its pieces' counts; pieces repeat (Zipf), so
    each distinct one is tokenized once per Python worker. Documents holding an added token's text
    (``<|im_start|>`` …) are encoded whole, as the tokenizer treats those specially. :func:`piece_counter` says
    whether a tokenizer qualifies; a test checks the counts against ``encode`` on the sample corpus and on strings
    chosen to trip the split."""

    def __init__(self, tokenizer: Any) -> None:
        import re as std_re

        import regex

        self.tokenizer = tokenizer
        self.split = regex.compile(BYTE_LEVEL_SPLIT)
        added = sorted((t.content for t in tokenizer.get_added_tokens_decoder().values()), key=len, reverse=True)
        self.added = std_re.compile("|".join(map(std_re.escape, added))) if added else None
        self.memo: dict[str, int] = {}

    def piece(self, piece: str) -> int:
        model, pre = self.tokenizer.model, self.tokenizer.pre_tokenizer
        if len(self.memo) >= PIECE_CACHE_LIMIT:
            self.memo.clear()
        n = self.memo[piece] = sum(len(model.tokenize(p)) for p, _ in pre.pre_tokenize_str(piece))
        return n

    def count(self, text: str) -> int:
        if self.added is not None and self.added.search(text):
            return len(self.tokenizer.encode(text, add_special_tokens=False).ids)
        memo, piece = self.memo, self.piece
        return sum(memo[p] if p in memo else piece(p) for p in self.split.findall(text))


def piece_counter(ref: str) -> PieceCounter | None:
    """A :class:`PieceCounter` for ``ref`` if its tokenizer is a plain byte-level BPE (no normaliser; the GPT-2
    split, no prefix space), else None (then :func:`count_tokens` encodes)."""

    def build() -> PieceCounter | None:
        tokenizer = load_tokenizer(ref)
        spec = json.loads(tokenizer.to_str())
        pre = spec.get("pre_tokenizer") or {}
        plain = (
            spec.get("normalizer") is None
            and (spec.get("model") or {}).get("type") == "BPE"
            and not (spec.get("model") or {}).get("dropout")
            and pre.get("type") == "ByteLevel"
            and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False)
        )
        return PieceCounter(tokenizer) if plain else None

    return _COUNTERS.get_or_create(ref, build)


def count_tokens(texts: list[str], ref: str | None, max_chars: int, by_pieces: bool = True) -> tuple[list[int], str]:
    """Token counts of ``texts`` (each cut at ``max_chars`` first: beyond that a document fails anyway), by
    :class:`PieceCounter` where the tokenizer allows it and ``by_pieces``, else by encoding each text."""
    if ref is None:
        return [-(-len(t) // CHARS_PER_TOKEN_ESTIMATE) for t in texts], f"estimate_chars_div_{CHARS_PER_TOKEN_ESTIMATE}"
    method = f"tokenizer:{tokenizer_file(ref).parent.name}"
    counter = piece_counter(ref) if by_pieces else None
    if counter is not None:
        return [counter.count(t[:max_chars]) for t in texts], method
    tokenizer = load_tokenizer(ref)
    encode = tokenizer.encode_batch_fast if by_pieces else tokenizer.encode_batch  # by_pieces=False: as clean-v2
    encoded = encode([t[:max_chars] for t in texts], add_special_tokens=False)
    return [len(e.ids) for e in encoded], method
