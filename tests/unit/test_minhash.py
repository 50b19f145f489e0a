"""MinHash pieces: the compiled kernel against a plain-Python definition, signatures against true Jaccard, exact
hashes, band keys, degenerate and non-ASCII texts, Arrow column shapes."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from backforth.udfs.minhash import (
    EXACT_MULTIPLIER,
    FNV_OFFSET,
    FNV_PRIME,
    band_keys,
    mix_constants,
    permutations,
    sketch,
    tokenize,
)

rng = random.Random(3)
VOCAB = [f"w{i}" for i in range(4000)]
BASE = " ".join(rng.choice(VOCAB) for _ in range(400))
M64 = (1 << 64) - 1
MIXED = [
    "Hello, World!  This is an ordinary ASCII sentence, with punctuation; and snake_case_words 3.14.",
    "Ça va? Très bien, merci — l'été à Montréal était chaud.",
    "İSTANBUL'da yağmur yağıyor ve İzmir güneşli.",  # Python's lower() turns İ into i + a combining dot
    "数据 去重 的 测试 文本 包含 中文 字符 和 English words",
    "नमस्ते दुनिया यह एक परीक्षण वाक्य है",  # Devanagari vowel signs are not \w in Python: words split there
    "emoji 🎉 between words 🎉 and ZWJ 👩‍💻 sequences here",
    "short",
    "",
    None,
    "   \n\t  ",
    "ÀÉÎÕÜ àéîõü MIXED case ÀÉÎÕÜ",
]


def fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def reference(text: str | None, ngram: int, a: np.ndarray, b: np.ndarray, seed: int) -> tuple[list[int], int, int]:
    """The module docstring's definition, one token at a time in plain Python."""
    hashes = []
    for token in tokenize(text):
        h = int(FNV_OFFSET)
        for byte in token.encode():
            h = ((h ^ byte) * int(FNV_PRIME)) & M64
        hashes.append(fmix(h))
    k = [int(x) for x in mix_constants(ngram, seed)]
    starts = range(len(hashes) - ngram + 1) if len(hashes) >= ngram else ([0] if hashes else [])
    shingles = []
    for s in starts:
        mixed = sum(h * k[j] for j, h in enumerate(hashes[s : s + ngram])) & M64
        shingles.append((mixed >> 32) ^ (mixed & 0xFFFFFFFF))
    sig = [
        min(((int(ai) * x + int(bi)) & 0xFFFFFFFF for x in shingles), default=0xFFFFFFFF)
        for ai, bi in zip(a, b, strict=True)
    ]
    exact = 0
    for h in hashes:
        exact = (exact * int(EXACT_MULTIPLIER) + h) & M64
    exact = (exact + len(hashes)) & M64 if hashes else 0
    return sig, len(shingles), exact - (1 << 64) if exact >= 1 << 63 else exact


def true_jaccard(x: str, y: str, n: int = 5) -> float:
    def grams(t: str) -> set:
        w = tokenize(t)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    a, b = grams(x), grams(y)
    return len(a & b) / len(a | b)


def edited(rate: float) -> str:
    return " ".join(rng.choice(VOCAB) if rng.random() < rate else w for w in BASE.split())


def test_kernel_matches_the_python_definition_on_mixed_scripts() -> None:
    a, b = permutations(16, 5)
    for ngram in (1, 3, 5):
        sig, counts, exact = sketch(MIXED, ngram, a, b, 5)
        for i, text in enumerate(MIXED):
            want_sig, want_count, want_exact = reference(text, ngram, a, b, 5)
            assert sig[i].tolist() == want_sig, (ngram, text)
            assert (int(counts[i]), int(exact[i])) == (want_count, want_exact), (ngram, text)


def test_arrow_column_shapes_give_the_same_sketch() -> None:
    a, b = permutations(8, 1)
    want = sketch(MIXED, 5, a, b, 1)
    column = pa.array(["padding"] + MIXED, pa.string())[1:]  # a slice: buffers start one element early
    for shaped in (column, column.cast(pa.large_string()), pa.chunked_array([column[:4], column[4:]])):
        got = sketch(shaped, 5, a, b, 1)
        assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))


def test_signature_agreement_estimates_jaccard() -> None:
    texts = [BASE] + [edited(r) for r in (0.01, 0.03, 0.06, 0.5)]
    a, b = permutations(256, 1)
    sig, _, _ = sketch(texts, 5, a, b, 1)
    for i in range(1, len(texts)):
        estimate = float(np.mean(sig[0] == sig[i]))
        assert abs(estimate - true_jaccard(texts[0], texts[i])) < 0.1


def test_shingle_counts_and_degenerate_texts() -> None:
    a, b = permutations(8, 0)
    sig, counts, exact = sketch(["a b c d e f", "one two", "", None, "x y z w v", "¿¡ — !!"], 5, a, b, 0)
    assert counts.tolist() == [2, 1, 0, 0, 1, 0]  # short text: one shingle; no words: none
    assert (sig[2] == np.iinfo(np.uint32).max).all() and (sig[3] == sig[2]).all() and (sig[5] == sig[2]).all()
    assert exact[2] == exact[3] == exact[5] == 0 and exact[0] != 0


def test_exact_hash_ignores_case_punctuation_and_spacing_only() -> None:
    texts = [
        "Hello, world!  Again.",
        "hello world again",
        "world hello again",
        "hello world",
        "",
        "ÉTÉ, été!",
        "été été",
    ]
    _, _, h = sketch(texts, 5, *permutations(4, 0), 0)
    assert h[0] == h[1] and h[5] == h[6]
    assert len({h[1], h[2], h[3], h[4], h[5]}) == 5


def test_band_keys_differ_across_bands_even_for_equal_rows() -> None:
    sig = np.zeros((1, 8), dtype=np.uint32)  # every band's rows identical
    keys = band_keys(sig, 4, 2, 0)
    assert len(set(keys[0].tolist())) == 4


def test_same_seed_same_signature_and_another_seed_differs() -> None:
    s1 = sketch([BASE], 5, *permutations(16, 9), 9)[0]
    s2 = sketch([BASE], 5, *permutations(16, 9), 9)[0]
    s3 = sketch([BASE], 5, *permutations(16, 10), 10)[0]
    assert (s1 == s2).all() and not (s1 == s3).all()
