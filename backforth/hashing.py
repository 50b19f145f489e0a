"""One fingerprint helper: what decides an output, hashed (sha256 of canonical JSON), cut to ``n`` hex characters."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(obj: Any, n: int = 8) -> str:
    """sha256 of ``obj`` as sorted-key JSON (non-JSON values via ``str``), first ``n`` hex characters."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]
