"""MinHash pieces: shingles, signatures against true Jaccard, exact hashes, band keys, degenerate texts."""

from __future__ import annotations

import random

import numpy as np

from udfs.minhash import band_keys, exact_hashes, permutations, shingle_hashes, signatures, token_hashes, tokenize

rng = random.Random(3)
VOCAB = [f"w{i}" for i in range(4000)]
BASE = " ".join(rng.choice(VOCAB) for _ in range(400))


def true_jaccard(x: str, y: str, n: int = 5) -> float:
    def grams(t: str) -> set:
        w = tokenize(t)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    a, b = grams(x), grams(y)
    return len(a & b) / len(a | b)


def edited(rate: float) -> str:
    return " ".join(rng.choice(VOCAB) if rng.random() < rate else w for w in BASE.split())


def test_signature_agreement_estimates_jaccard() -> None:
    texts = [BASE] + [edited(r) for r in (0.01, 0.03, 0.06, 0.5)]
    a, b = permutations(256, 1)
    sig = signatures(*shingle_hashes(texts, 5, 1), a, b)
    for i in range(1, len(texts)):
        estimate = float(np.mean(sig[0] == sig[i]))
        assert abs(estimate - true_jaccard(texts[0], texts[i])) < 0.1


def test_shingle_counts_and_degenerate_texts() -> None:
    shingles, offsets = shingle_hashes(["a b c d e f", "one two", "", None, "x y z w v"], 5, 0)
    assert np.diff(offsets).tolist() == [2, 1, 0, 0, 1]  # short text: one shingle; empty: none
    a, b = permutations(8, 0)
    sig = signatures(shingles, offsets, a, b)
    assert (sig[2] == np.iinfo(np.uint32).max).all() and (sig[3] == sig[2]).all()


def test_exact_hash_ignores_case_punctuation_and_spacing_only() -> None:
    texts = ["Hello, world!  Again.", "hello world again", "world hello again", "hello world", ""]
    h = exact_hashes(*token_hashes(texts), 0)
    assert h[0] == h[1]
    assert len({h[1], h[2], h[3], h[4]}) == 4


def test_band_keys_differ_across_bands_even_for_equal_rows() -> None:
    sig = np.zeros((1, 8), dtype=np.uint32)  # every band's rows identical
    keys = band_keys(sig, 4, 2, 0)
    assert len(set(keys[0].tolist())) == 4


def test_same_seed_same_signature() -> None:
    a1, b1 = permutations(16, 9)
    a2, b2 = permutations(16, 9)
    s = shingle_hashes([BASE], 5, 9)
    assert (signatures(*s, a1, b1) == signatures(*s, a2, b2)).all()
