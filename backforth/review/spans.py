"""Which parts of a response were copied from its document: runs of at least ``n`` words (case-insensitive) that
also occur, in the same order, in the document — what "stay close to the draft" looks like on the page."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)


def copied_segments(response: str, document: str, n: int = 6) -> list[tuple[str, bool]]:
    """``response`` cut into consecutive (text, copied) segments whose texts join back to it exactly."""
    words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(response)]
    doc = [w.lower() for w in WORD.findall(document)]
    grams = {tuple(doc[i : i + n]) for i in range(len(doc) - n + 1)}
    marked = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(w for _, _, w in words[i : i + n]) in grams:
            marked[i : i + n] = [True] * n
    segments: list[tuple[str, bool]] = []
    cursor, i = 0, 0
    while i < len(words):
        if not marked[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and marked[j + 1]:
            j += 1
        start, end = words[i][0], words[j][1]
        if start > cursor:
            segments.append((response[cursor:start], False))
        segments.append((response[start:end], True))
        cursor, i = end, j + 1
    if cursor < len(response):
        segments.append((response[cursor:], False))
    return segments


def copied_share(segments: list[tuple[str, bool]]) -> float:
    """The share of the response's words inside copied runs."""
    total = sum(len(WORD.findall(t)) for t, _ in segments)
    return sum(len(WORD.findall(t)) for t, c in segments if c) / total if total else 0.0
