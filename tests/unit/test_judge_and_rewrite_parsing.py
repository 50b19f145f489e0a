"""Judge scores, digit probabilities, rewrite extraction and the AUC, on hand-checked inputs."""

from __future__ import annotations

import math

import pytest

from backforth.udfs import parsing
from backforth.udfs.parsing import digit_distribution, extract_response, parse_score
from backforth.udfs.stats import auc


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The answer is focused and complete.\nScore: 4", (4, None)),
        ("Score: 2 at first sight, but on reflection\nScore: 5", (5, None)),  # the last score wins
        ("It covers the three steps asked for. I rate it 3/5.", (3, None)),
        ("Rating: **2**", (2, None)),
        ("Final verdict: [[5]]", (5, None)),
        ("Reasoning in 2 sentences.\n4", (4, None)),  # a bare number on the last line
        ("Score: 7", (None, parsing.OUT_OF_RANGE)),
        ("Score: 0", (None, parsing.OUT_OF_RANGE)),
        ("Score: 4.5", (None, parsing.OUT_OF_RANGE)),
        ("I think it is quite good overall.", (None, parsing.NO_SCORE)),
        ("", (None, parsing.EMPTY)),
        (None, (None, parsing.EMPTY)),
        ("x" * 100_000 + " Score: 3", (3, None)),  # enormous output: still parsed, no failure
    ],
)
def test_parse_score(raw, expected) -> None:
    assert parse_score(raw) == expected


def test_digit_distribution() -> None:
    mass, expected, top = digit_distribution({"1": 0.1, "3": 0.1, "5": 0.6, "x": 0.2})
    assert mass == pytest.approx(0.8) and expected == pytest.approx((0.1 + 0.3 + 3.0) / 0.8) and top == 5
    assert digit_distribution({})[0] == 0.0 and digit_distribution({})[2] is None
    assert math.isnan(digit_distribution({"a": 1.0})[1])


Q = "How do bees make honey?"


@pytest.mark.parametrize(
    ("raw", "finish", "prefill", "expected"),
    [
        (" Bees sip nectar and fan it until it thickens.", "stop", "[RES]",
         ("Bees sip nectar and fan it until it thickens.", parsing.OK)),  # prefilled, stopped at [/RES]
        ("Sure. [RES] Bees sip nectar and fan it dry. [/RES] Hope this helps!", "stop", "",
         ("Bees sip nectar and fan it dry.", parsing.OK)),
        ("[RES] Bees sip nectar and fan it dry.", "stop", "", ("Bees sip nectar and fan it dry.", parsing.OK_UNCLOSED)),
        ("Bees sip nectar and fan it dry.", "stop", "", ("Bees sip nectar and fan it dry.", parsing.OK_UNTAGGED)),
        ("I will put the answer between [RES] and [/RES].", "stop", "", (None, parsing.TAG_ECHO)),
        ("Answer between [RES] and [/RES]: [RES] Nectar is dried by fanning. [/RES]", "stop", "",
         ("Nectar is dried by fanning.", parsing.OK)),  # the echo first, then the real answer
        (" Bees sip nectar and", "length", "[RES]", (None, parsing.TRUNCATED)),
        (" I'm sorry, but I can't help with that.", "stop", "[RES]", (None, parsing.REFUSAL)),
        ("   ", "stop", "[RES]", (None, parsing.EMPTY)),
        (" How do bees make honey?", "stop", "[RES]", (None, parsing.INSTRUCTION_COPY)),
    ],
)  # fmt: skip
def test_extract_response(raw, finish, prefill, expected) -> None:
    assert extract_response(raw, Q, "document text", finish, prefill) == expected


def test_untagged_output_can_be_refused_by_config() -> None:
    assert extract_response("Bees sip nectar.", Q, None, "stop", "", accept_untagged=False) == (None, parsing.NO_TAGS)


def test_auc_hand_checked() -> None:
    assert auc([3, 4, 5], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([3, 3], [3, 3]) == 0.5
    assert auc([2, 4], [3]) == 0.5  # one win, one loss
    assert auc([5, 4, 4], [4, 1]) == pytest.approx((1 + 1 + 0.5 + 1 + 0.5 + 1) / 6)
    assert math.isnan(auc([], [1])) and math.isnan(auc([1.0, float("nan")], []))
