"""The one fingerprint of a JSON-able value: config hashes, rule-set versions, training and step versions.

Stored versions (``clean_version``, ``dedup_version``, registered models' fingerprint tags, run tags) are these
strings, so the serialisation must never change: sorted keys, default separators, ASCII escapes, ``str()`` for
anything JSON has no type for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """``obj`` as the JSON text that :func:`fingerprint` hashes."""
    return json.dumps(obj, sort_keys=True, default=str)


def fingerprint(obj: Any, n: int) -> str:
    """The first ``n`` hex characters of the SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]
