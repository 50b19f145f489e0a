"""Pairwise evaluation arithmetic: verdict parsing, both orders, win rate and its bootstrap interval."""

from __future__ import annotations

import math

from backforth.evaluation import bootstrap_interval, item_score, parse_verdict, summarize


def test_verdicts_are_read_from_the_last_verdict_line_in_any_common_spelling() -> None:
    assert parse_verdict("Answer A is vague.\nVerdict: B") == "B"
    assert parse_verdict("Verdict: [[A]]") == "A" and parse_verdict("VERDICT - tie") is None  # '-' is not a separator
    assert parse_verdict("verdict: Tie.") == "tie" and parse_verdict("Verdict: A\n...on reflection, Verdict: B") == "B"
    assert parse_verdict("Both are fine.") is None and parse_verdict(None) is None
    assert parse_verdict("Verdict: Answer B") is None  # only the bare letter counts: no guessing


def test_both_orders_cancel_a_position_bias_and_a_consistent_judge_decides() -> None:
    assert item_score("A", "B") == 1.0  # candidate first and chosen; baseline first and the other one chosen
    assert item_score("B", "A") == 0.0
    assert item_score("A", "A") == item_score("B", "B") == 0.5  # a judge that always picks one position: a tie
    assert item_score("tie", "B") == 0.75 and item_score(None, "B") == 1.0 and item_score(None, None) is None


def test_summary_counts_outcomes_and_the_interval_covers_the_win_rate() -> None:
    verdicts = [("A", "B")] * 30 + [("B", "A")] * 10 + [("A", "A")] * 10 + [(None, None)] * 2
    s = summarize(verdicts, samples=2000, seed=3)
    assert s.items == 52 and s.judged == 50 and s.counts == {"win": 30, "tie": 10, "loss": 10}
    assert s.win_rate == 0.7 and s.ci_low < 0.7 < s.ci_high and 0.55 < s.ci_low and s.ci_high < 0.85
    assert s.invalid_orders == 4 and s.consistent == 0.8  # 40 of the 50 items judged in both orders agree
    assert math.isclose(s.first_position, 0.6)  # the 10 always-A items tilt it towards the first position
    assert summarize(verdicts, samples=2000, seed=3) == s  # seeded: the same interval every time
    assert all(math.isnan(x) for x in bootstrap_interval([], 100, 1))
    assert math.isnan(summarize([(None, None)], samples=100).win_rate)
