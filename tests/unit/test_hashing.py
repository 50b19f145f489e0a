"""fingerprint: the stored versions are these strings, so the serialisation is pinned here."""

from __future__ import annotations

import hashlib
from pathlib import Path

from backforth.hashing import canonical_json, fingerprint


def test_sha256_of_sorted_json_with_str_for_the_rest() -> None:
    obj = {"b": [1, 2.5, None], "a": {"y": "é", "x": True}, "p": Path("/tmp/x")}
    text = '{"a": {"x": true, "y": "\\u00e9"}, "b": [1, 2.5, null], "p": "/tmp/x"}'
    assert canonical_json(obj) == text
    assert fingerprint(obj, n=12) == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert fingerprint(obj, n=64) == hashlib.sha256(text.encode()).hexdigest()


def test_key_order_does_not_matter_and_n_cuts() -> None:
    assert fingerprint({"a": 1, "b": 2}, n=8) == fingerprint({"b": 2, "a": 1}, n=8)
    assert len(fingerprint({}, n=8)) == 8 and len(fingerprint({}, n=16)) == 16
    assert fingerprint({"a": 1}, n=8) != fingerprint({"a": 2}, n=8)


def test_the_rule_set_versions_keep_their_form() -> None:
    from backforth.jobs.clean import CleanConfig
    from backforth.jobs.dedup import DedupConfig

    params = {"ngram": 5, "bands": 32, "rows": 4, "num_perm": 128, "threshold": 0.6, "seed": 42}
    assert DedupConfig().fingerprint() == "dedup-v2-" + fingerprint(params, n=8)
    clean = CleanConfig().fingerprint()
    assert clean.startswith("clean-v4-") and len(clean) == len("clean-v4-") + 8
