"""Text and identity helpers shared by jobs: stable document ids as a Python function and as a Spark column.

The two forms must agree bit for bit (a test checks it): the Python one documents the rule and serves tests and
drivers, the column one runs at scale without a Python UDF.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

ID_SEP = "\x1f"  # ASCII unit separator: cannot occur in ids or URLs by accident
ID_HEX_CHARS = 32  # 128 bits: collision-free in practice at 10^9 documents


def doc_id(source: str | None, source_id: str | None, url: str | None, text: str) -> str:
    """Stable id: the source's own id when it has one, else the URL and the content.

    >>> doc_id("cc", "abc", None, "x") == doc_id("cc", "abc", "https://other", "changed")
    True
    >>> doc_id(None, None, "https://a", "x") != doc_id(None, None, "https://b", "x")
    True
    """
    if source_id is not None:
        key = ID_SEP.join(["id", source or "", source_id])
    else:
        key = ID_SEP.join(["ct", url or "", text])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def doc_id_column(source: str = "source", source_id: str = "source_id", url: str = "url", text: str = "text") -> Column:
    """The same rule as :func:`doc_id`, as a Spark column expression."""
    from pyspark.sql import functions as F

    sep = F.lit(ID_SEP)
    by_id = F.concat(F.lit("id"), sep, F.coalesce(F.col(source), F.lit("")), sep, F.col(source_id))
    by_content = F.concat(F.lit("ct"), sep, F.coalesce(F.col(url), F.lit("")), sep, F.col(text))
    key = F.when(F.col(source_id).isNotNull(), by_id).otherwise(by_content)
    return F.substring(F.sha2(key, 256), 1, ID_HEX_CHARS)
