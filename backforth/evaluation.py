"""Pairwise evaluation arithmetic: a judge's verdict, an item's score over both presentation orders, and the win rate
with a bootstrap interval. Pure Python (numpy for the bootstrap), tested without Spark or a model.

Each held-out instruction is judged twice: once with the candidate's answer shown first (order ``ab``) and once with
the baseline's first (order ``ba``). A judge that favours a position then favours each model once, so its bias
cancels in the item's score instead of deciding it. An item scores 1 when the candidate wins every valid order, 0 when
it loses every one, and the mean of its orders' scores otherwise (a tie counts 1/2); the win rate is the mean item
score over items with at least one valid verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERDICT = re.compile(r"verdict\s*[:=]?\s*[\*\[\(\"']*\s*(a|b|tie)\b", re.IGNORECASE)
OUTCOMES = ("win", "tie", "loss")


def parse_verdict(text: str | None) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` from the judge's last ``Verdict: …`` line, or None when there is none.

    >>> parse_verdict("A is clearer.\\nVerdict: **B**"), parse_verdict("verdict = tie"), parse_verdict("I prefer A")
    ('B', 'tie', None)
    """
    found = VERDICT.findall(text or "")
    if not found:
        return None
    last = found[-1].lower()
    return "tie" if last == "tie" else last.upper()


def order_score(verdict: str | None, candidate_first: bool) -> float | None:
    """The candidate's score in one order: 1 it won, 0 it lost, 0.5 a tie, None no verdict.

    >>> order_score("A", True), order_score("A", False), order_score("tie", False), order_score(None, True)
    (1.0, 0.0, 0.5, None)
    """
    if verdict is None:
        return None
    if verdict == "tie":
        return 0.5
    return 1.0 if (verdict == "A") == candidate_first else 0.0


def item_score(verdict_ab: str | None, verdict_ba: str | None) -> float | None:
    """The mean of the valid orders' scores (``ab``: candidate first), None when neither order has a verdict.

    >>> item_score("A", "B"), item_score("A", "A"), item_score(None, "A"), item_score(None, None)
    (1.0, 0.5, 0.0, None)
    """
    scores = [s for s in (order_score(verdict_ab, True), order_score(verdict_ba, False)) if s is not None]
    return sum(scores) / len(scores) if scores else None


def outcome(score: float | None) -> str | None:
    """win / tie / loss of an item score (None: no verdict)."""
    if score is None:
        return None
    return "win" if score > 0.5 else "loss" if score < 0.5 else "tie"


def bootstrap_interval(scores: list[float], samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``scores`` (items resampled with replacement).

    >>> bootstrap_interval([0.5] * 20, 500, 1)
    (0.5, 0.5)
    """
    import numpy as np

    if not scores:
        return float("nan"), float("nan")
    values = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


@dataclass
class Summary:
    items: int  # held-out instructions judged
    judged: int  # items with at least one valid verdict
    win_rate: float
    ci_low: float
    ci_high: float
    counts: dict[str, int] = field(default_factory=dict)  # win / tie / loss
    invalid_orders: int = 0  # judge outputs without a verdict (of 2 × items)
    consistent: float = float("nan")  # share of items judged in both orders whose two verdicts name the same model
    first_position: float = float("nan")  # share of valid A/B verdicts that picked the answer shown first

    def metrics(self) -> dict[str, float]:
        return {
            "items": self.items,
            "items_judged": self.judged,
            "win_rate": self.win_rate,
            "win_rate_ci_low": self.ci_low,
            "win_rate_ci_high": self.ci_high,
            **{f"outcome.{k}": self.counts.get(k, 0) for k in OUTCOMES},
            "invalid_orders": self.invalid_orders,
            "order_consistency": self.consistent,
            "first_position_share": self.first_position,
        }


def summarize(verdicts: list[tuple[str | None, str | None]], samples: int = 2000, seed: int = 7) -> Summary:
    """The win rate of the candidate over ``verdicts`` ((order ab, order ba) per item), its bootstrap interval and
    the judge's position statistics.

    >>> s = summarize([("A", "B"), ("A", "A"), ("B", "A"), (None, None)], samples=200)
    >>> s.win_rate, s.counts, s.invalid_orders, s.first_position
    (0.5, {'win': 1, 'tie': 1, 'loss': 1}, 2, 0.6667)
    """
    scores = [item_score(ab, ba) for ab, ba in verdicts]
    valid = [s for s in scores if s is not None]
    counts = {k: sum(1 for s in valid if outcome(s) == k) for k in OUTCOMES}
    both = [(ab, ba) for ab, ba in verdicts if ab in ("A", "B") and ba in ("A", "B")]
    consistent = sum(1 for ab, ba in both if ab != ba) / len(both) if both else float("nan")  # A then B: same model
    picks = [v == "A" for ab, ba in verdicts for v in (ab, ba) if v in ("A", "B")]
    low, high = bootstrap_interval(valid, samples, seed)
    return Summary(
        items=len(verdicts),
        judged=len(valid),
        win_rate=round(sum(valid) / len(valid), 4) if valid else float("nan"),
        ci_low=low,
        ci_high=high,
        counts=counts,
        invalid_orders=sum(1 for ab, ba in verdicts for v in (ab, ba) if v is None),
        consistent=round(consistent, 4) if both else float("nan"),
        first_position=round(sum(picks) / len(picks), 4) if picks else float("nan"),
    )
