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
SIGNATURE_SCHEMA = "signature array<int>, bands array<bigint>, n_shingles int"  # what the mapper appends


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


ASCII_NON_WORD = str.maketrans({chr(i): " " for i in range(128) if not (chr(i).isalnum() or chr(i) == "_")})


def tokenize(text: str | None) -> list[str]:
    r"""Lowercased word tokens, as ``re.findall(r"\w+", text.lower())``; pure-ASCII text takes a C fast path
    (translate + split, measured 1.7× faster on English prose).

    >>> tokenize("Hello, World! Ça va?")
    ['hello', 'world', 'ça', 'va']
    >>> tokenize("snake_case x-y 3.14")
    ['snake_case', 'x', 'y', '3', '14']
    """
    if not text:
        return []
    lowered = text.lower()
    return lowered.translate(ASCII_NON_WORD).split() if lowered.isascii() else TOKEN.findall(lowered)


def token_hashes(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(64-bit hash of every token, flat; tokens per text; start offsets, len(texts)+1 of them)."""
    import pandas as pd

    token_lists = [tokenize(t) for t in texts]
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    flat = [tok for toks in token_lists for tok in toks]
    if not flat:
        return np.zeros(0, dtype=np.uint64), lengths, starts
    codes, distinct = pd.factorize(np.array(flat, dtype=object))  # hash each distinct token once
    hashes = pd.util.hash_array(np.asarray(distinct, dtype=object), categorize=False).astype(np.uint64)[codes]
    return hashes, lengths, starts


def shingle_hashes(texts: list[str | None], ngram: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every word n-gram of every text, flat, with each text's start offset (len(texts)+1 of them).

    A text shorter than ``ngram`` words contributes one shingle (all its words); an empty text none.
    """
    return shingles_of_tokens(*token_hashes(texts), ngram, seed)


def shingles_of_tokens(
    hashes: np.ndarray, lengths: np.ndarray, starts: np.ndarray, ngram: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shingle_hashes` from already hashed tokens."""
    texts = lengths  # one entry per text
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(len(texts) + 1, dtype=np.int64)
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
    """MinHash signature per text (rows, uint32) over ``len(a)`` permutations; texts without shingles get all-max.

    One permutation at a time over the whole batch keeps the working set to one vector: measured 6× faster than
    a permutations × shingles matrix, which does not fit in cache.
    """
    sig = np.full((len(offsets) - 1, len(a)), np.iinfo(np.uint32).max, dtype=np.uint32)
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    if len(nonempty) == 0:
        return sig
    starts = offsets[nonempty]
    for i in range(len(a)):
        sig[nonempty, i] = np.minimum.reduceat(a[i] * shingles + b[i], starts)  # uint32: wraps mod 2^32 by design
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """One 64-bit key per band: a mix of that band's ``rows`` signature values and of the band's index, so keys of
    different bands never meet and one flat key column suffices."""
    k = mix_constants(rows + 1, seed + 1)
    cut = sig[:, : bands * rows].astype(np.uint64).reshape(len(sig), bands, rows)
    with np.errstate(over="ignore"):
        keys = (cut * k[None, None, :rows]).sum(axis=2, dtype=np.uint64)
        keys += (np.arange(bands, dtype=np.uint64) + np.uint64(1)) * k[rows]
    return keys.astype(np.int64)


def exact_hashes(hashes: np.ndarray, lengths: np.ndarray, starts: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash of each text's lowercased word sequence (punctuation and spacing ignored): position-weighted
    sum of token hashes. Two texts with the same words in the same order collide; others with odds ~2^-64."""
    if len(hashes) == 0:
        return np.zeros(len(lengths), dtype=np.int64)
    position = np.arange(len(hashes)) - np.repeat(starts[:-1], lengths)
    weights = mix_constants(int(lengths.max()) + 1, seed + 2)
    with np.errstate(over="ignore"):
        weighted = hashes * weights[position]
        sums = np.add.reduceat(weighted, np.minimum(starts[:-1], len(hashes) - 1)) + lengths.astype(np.uint64)
    return np.where(lengths > 0, sums, np.uint64(0)).astype(np.int64)


def make_minhash_mapper(ngram: int, num_perm: int, bands: int, rows: int, seed: int) -> Any:
    """A ``mapInArrow`` function: batches with a ``text`` column → the same batches without ``text``, plus
    ``exact_hash`` (bigint, see :func:`exact_hashes`), ``signature`` (array<int>), ``bands`` (array<bigint>) and
    ``n_shingles``. Arrow in, Arrow out: the arrays are
    built from flat numpy buffers, never as one Python object per row. Signature values are uint32 stored bit for
    bit as int32: only equality is ever asked of them."""
    import pyarrow as pa

    if bands * rows > num_perm:
        raise ValueError(f"bands × rows = {bands * rows} needs at least that many permutations (num_perm={num_perm})")
    a, b = permutations(num_perm, seed)

    def fixed_lists(values: np.ndarray) -> pa.Array:
        offsets = np.arange(0, values.size + 1, values.shape[1] if values.ndim == 2 else 1, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))

    def mapper(batches: Any) -> Any:
        for batch in batches:
            tokens = token_hashes(batch.column("text").to_pylist())
            shingles, offsets = shingles_of_tokens(*tokens, ngram, seed)
            sig = signatures(shingles, offsets, a, b)
            keep = [name for name in batch.schema.names if name != "text"]
            columns = [batch.column(name) for name in keep] + [
                pa.array(exact_hashes(*tokens, seed)),
                fixed_lists(sig.view(np.int32)),
                fixed_lists(band_keys(sig, bands, rows, seed)),
                pa.array(np.diff(offsets).astype(np.int32)),
            ]
            yield pa.RecordBatch.from_arrays(columns, names=[*keep, "exact_hash", "signature", "bands", "n_shingles"])

    return mapper
