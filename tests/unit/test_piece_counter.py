"""Token counts by pieces (udfs/tokens.py) equal the tokenizer's own encoding, and tokenizers it cannot reproduce
are encoded instead."""

from __future__ import annotations

from pathlib import Path

import yaml

from backforth.models import resolve_tokenizer
from backforth.udfs.tokens import PieceCounter, count_tokens, load_tokenizer, piece_counter

CORPUS = yaml.safe_load((Path(__file__).resolve().parents[2] / "data/sample/source/corpus.yaml").read_text())
TRICKY = [
    "", " ", "   ", "a  b   c    d", "tabs\t\tand\nnewlines\n\n\n  indented", "12345 67.89 1,000,000", "x1y2z3",
    "it's they're I'd we'll", "IT'S", "naïve café Ünïcödé", "日本語のテキスト", "emoji 😀👍🏽 done",
    "\u00a0nbsp\u2003em",
    "<|im_start|>user\nhi<|im_end|>", "text <|endoftext|> more", "```python\ndef f(x):\n    return x\n```",
    "trailing spaces   ", "   leading", "\r\nwindows\r\nlines", "$$$ ### !!! ??? ...", "word" * 500,
]  # fmt: skip


def test_piece_counts_equal_encoding_on_the_embedded_tokenizer() -> None:
    ref = resolve_tokenizer("embedded")
    counter = piece_counter(ref)
    assert isinstance(counter, PieceCounter)  # SmolLM2's tokenizer is a plain byte-level BPE
    tokenizer = load_tokenizer(ref)
    texts = TRICKY + [d["text"] for d in CORPUS]
    expected = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
    assert [counter.count(t) for t in texts] == expected
    assert [counter.count(t) for t in texts] == expected  # again, from the memo
    assert count_tokens(texts, ref, 10**9) == (expected, count_tokens(texts, ref, 10**9, by_pieces=False)[1])


def test_a_tokenizer_with_a_normaliser_is_encoded_whole(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"hello": 0, "world": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert piece_counter(str(tmp_path)) is None
    assert count_tokens(["Hello WORLD again", ""], str(tmp_path), 1000)[0] == [3, 0]
