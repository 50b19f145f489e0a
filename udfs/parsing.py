"""Parsers for model outputs. Pure functions on strings: every rejected output gets a named reason, never a silent drop.

Small models fail in recognisable ways (measured on SmolLM2-135M; larger models fail the same ways, less often): they
label the answer ("Instruction: ..."), wrap it in a friendly preamble ("Sure! Here is the question: ..."), quote it,
answer the request instead of writing it, refuse, repeat the prompt's own wording, or copy the document.
"""

from __future__ import annotations

import re

# Reasons an instruction is rejected (the `reject_reason` column of `instructions`).
EMPTY = "empty_output"
TRUNCATED = "truncated"
REFUSAL = "refusal"
PROMPT_ECHO = "prompt_echo"
DOCUMENT_COPY = "document_copy"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
DESCRIBES_TEXT = "describes_text"  # talks about the text or the request instead of making one

_LABEL = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:the\s+)?(?:most\s+likely\s+)?(?:user(?:'s)?\s+)?"
    r"(?:instruction|question|request|prompt|query|task|user)\s*(?:\d+\s*)?(?:\*\*|__)?\s*[:\-–]\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|the (?:most likely )?(?:request|question|"
    r"instruction)\b)[^\n:]{0,80}:\s*",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[\"“«]([^\"”»\n]{12,400}?[?.!])[\"”»]")
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i'?m unable|i am unable|i'?m not able|"
    r"as an ai\b|i do not have|i don'?t have)",
    re.IGNORECASE,
)
_META = re.compile(
    r"^\s*(?:(?:this|the|that|your|my|a)\s+(?:\w+\s+){0,2}?(?:text|article|passage|document|page|request|reply|"
    r"response|user|query|prompt)\b(?!\s*(?:[?]|\w+\s*\?))|the\s+(?:most\s+likely|requested)\b)",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def shingles(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlap(candidate: str, source: str, n: int = 4) -> float:
    """Share of the candidate's word n-grams that also occur in ``source`` (0 when the candidate is shorter)."""
    cw = _words(candidate)
    mine = shingles(cw, n)
    if not mine:
        return 0.0
    return len(mine & shingles(_words(source), n)) / len(mine)


def strip_wrapping(raw: str) -> str:
    """Remove preambles, labels, markdown emphasis and surrounding quotes; keep the first paragraph."""
    text = raw.strip()
    for _ in range(3):  # "Sure! Here is the instruction:\n\nInstruction: ..." has two layers
        before = text
        text = _PREAMBLE.sub("", text, count=1).strip()
        text = _LABEL.sub("", text, count=1).strip()
        if text == before:
            break
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if paragraphs:
        text = paragraphs[0]
        text = _LABEL.sub("", text, count=1).strip()
    text = text.strip("*_` \n")
    if len(text) >= 2 and text[0] in "\"'“«" and text[-1] in "\"'”»":
        text = text[1:-1].strip()
    return re.sub(r"\s+", " ", text)


def clean_instruction(
    raw: str | None,
    document: str | None,
    prompt_text: str = "",
    finish_reason: str | None = "stop",
    min_words: int = 3,
    max_words: int = 120,
) -> tuple[str | None, str | None]:
    """A backtranslated output → (instruction, None) or (None, reason)."""
    if raw is None or not raw.strip():
        return None, EMPTY
    if finish_reason == "length":
        return None, TRUNCATED
    if _REFUSAL.search(raw):
        return None, REFUSAL
    text = strip_wrapping(raw)
    quoted = _QUOTED.search(raw)
    if quoted and (len(_words(text)) > max_words or not text.rstrip().endswith(("?", "."))):
        text = quoted.group(1).strip()  # "The user probably asked “How do bees make honey?” because ..."
    if not text:
        return None, EMPTY
    if _REFUSAL.search(text):
        return None, REFUSAL
    n = len(_words(text))
    if n < min_words:
        return None, TOO_SHORT
    if _META.search(text) and not text.rstrip().endswith("?"):
        return None, DESCRIBES_TEXT
    if prompt_text and n >= 6 and overlap(text, prompt_text, 4) >= 0.5:
        return None, PROMPT_ECHO
    if document and n >= 8 and overlap(text, document, 5) >= 0.6:
        return None, DOCUMENT_COPY
    if n > max_words:
        return None, TOO_LONG
    return text, None


# --- judge scores ---------------------------------------------------------------------------------------------------
NO_SCORE = "no_score"
OUT_OF_RANGE = "out_of_range"
LOW_MASS = "low_digit_mass"

_SCORE_PATTERNS = [
    re.compile(r"score\s*(?:is|of|[:=])?\s*[*_\[(]*\s*(-?\d+(?:\.\d+)?)(?!\s*[\d.]*\s*/\s*(?:[0-46-9]|\d\d))", re.I),
    re.compile(r"(?:rating|rate it|rated)\s*(?:is|of|as|[:=])?\s*[*_\[(]*\s*(-?\d+(?:\.\d+)?)", re.I),
    re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*5\b", re.I),
    re.compile(r"\[\[(\d+)\]\]"),
]


def parse_score(raw: str | None, low: int = 1, high: int = 5) -> tuple[int | None, str | None]:
    """A judge's text → (score, None) or (None, reason). Every pattern is tried; the match that ends last wins
    (reasoning often mentions other numbers before the verdict on the last line)."""
    if raw is None or not raw.strip():
        return None, EMPTY
    found: list[tuple[int, str]] = []
    for pattern in _SCORE_PATTERNS:
        found += [(m.end(), m.group(1)) for m in pattern.finditer(raw)]
    if not found:
        lines = [line.strip(" *_.`") for line in raw.strip().splitlines() if line.strip()]
        if lines and re.fullmatch(r"-?\d+", lines[-1]):  # a bare number on the last line
            found = [(len(raw), lines[-1])]
    if not found:
        return None, NO_SCORE
    value = float(max(found)[1])
    if value != int(value) or not low <= value <= high:
        return None, OUT_OF_RANGE
    return int(value), None


def digit_distribution(probs: dict[str, float], low: int = 1, high: int = 5) -> tuple[float, float, int | None]:
    """Probabilities of the digit tokens → (mass on the digits, expected score, most likely digit)."""
    digits = {d: float(probs.get(str(d), 0.0)) for d in range(low, high + 1)}
    mass = sum(digits.values())
    if mass <= 0:
        return 0.0, float("nan"), None
    expected = sum(d * p for d, p in digits.items()) / mass
    return mass, expected, max(digits, key=lambda d: (digits[d], -d))


# --- rewritten responses --------------------------------------------------------------------------------------------
OK = "ok"
OK_UNCLOSED = "ok_unclosed"  # [RES] without [/RES], but the model stopped by itself
OK_UNTAGGED = "ok_untagged"  # no tags at all: the whole output is taken as the answer
TAG_ECHO = "tag_echo"  # the tags only repeat the prompt's own sentence about them
INSTRUCTION_COPY = "instruction_copy"
NO_TAGS = "no_tags"
OPEN_TAG, CLOSE_TAG = "[RES]", "[/RES]"
ACCEPTED_RESPONSE = (OK, OK_UNCLOSED, OK_UNTAGGED)  # the catalog's "kept" responses: backforth.catalog


def extract_response(
    raw: str | None,
    instruction: str | None = None,
    document: str | None = None,
    finish_reason: str | None = "stop",
    prefilled: str = "",
    accept_untagged: bool = True,
    min_words: int = 3,
) -> tuple[str | None, str]:
    """A rewriter's (or distiller's) output → (response or None, status). Statuses in ``ACCEPTED_RESPONSE`` keep the
    response; the others name why it was rejected."""
    if raw is None or not (prefilled + raw).strip(" \n[]RES/"):
        return None, EMPTY
    if finish_reason == "length":
        return None, TRUNCATED
    text = prefilled + raw
    status = OK
    if OPEN_TAG in text:
        after = text.split(OPEN_TAG)
        # the last opening tag followed by real content (echoes like "between [RES] and [/RES]" come first)
        candidates = [part for part in after[1:] if part.split(CLOSE_TAG)[0].strip(" .,:;\n") not in ("", "and")]
        if not candidates:
            return None, TAG_ECHO
        body = candidates[-1]
        if CLOSE_TAG in body:
            body = body.split(CLOSE_TAG)[0]
        elif not (OPEN_TAG in prefilled and len(after) == 2):
            status = OK_UNCLOSED
        # else: prefilled "[RES]" and the engine stopped at "[/RES]" (stop strings are not returned) or at EOS
    elif CLOSE_TAG in text:
        body, status = text.split(CLOSE_TAG)[0], OK_UNCLOSED
    else:
        if not accept_untagged:
            return None, NO_TAGS
        body, status = text, (OK_UNTAGGED if not prefilled else OK_UNCLOSED)
    body = body.strip()
    if not body:
        return None, EMPTY
    if _REFUSAL.search(body):
        return None, REFUSAL
    if len(_words(body)) < min_words:
        return None, TOO_SHORT
    if instruction and overlap(body, instruction, 3) >= 0.9 and len(_words(body)) <= 1.5 * len(_words(instruction)):
        return None, INSTRUCTION_COPY
    return body, status
