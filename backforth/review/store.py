"""What the review app reads and writes: the local Delta tables through delta-rs (no JVM, so a page loads in
milliseconds and works while a job runs) and the ``reviews`` table it appends to.

Each table is read with the columns a view needs and kept until its Delta version changes, so the list pages cost
one version check per table after the first load. Texts of one pair (the document, the judge's output) are read with
a filter pushed down to the Parquet files.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backforth import reviews as review_table

LIST_COLUMNS = ["doc_id", "step_version", "kind", "source_version", "instruction", "response", "status"]


class NotFound(LookupError):
    """No such pair (the app answers 404)."""


@dataclass
class Pair:
    doc_id: str
    step_version: str
    kind: str
    source_version: str | None
    instruction: str | None
    response: str | None
    status: str | None
    instruction_version: str | None = None
    score: float | None = None
    source: str | None = None
    label: str | None = None  # the newest review's
    reason: str | None = None


class Store:
    """Reads the tables of one schema folder (``<data>/warehouse/<schema>.db``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[int, Any]] = {}
        self._pairs: tuple[tuple[int, ...], list[Pair]] | None = None
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return (self.folder / name / "_delta_log").is_dir()

    def frame(self, name: str, columns: list[str] | None = None) -> Any:
        """The table as a pandas DataFrame (``columns`` only), cached until its Delta version changes; an empty
        frame when the table does not exist yet."""
        import pandas as pd
        from deltalake import DeltaTable

        if not self.exists(name):
            return pd.DataFrame(columns=columns or [])
        table = DeltaTable(str(self.folder / name))
        key = f"{name}:{','.join(columns or [])}"
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == table.version():
                return cached[1]
        present = [c for c in (columns or []) if c in table.schema().to_arrow().names] or None
        frame = table.to_pyarrow_table(columns=present).to_pandas()
        for column in columns or []:
            if column not in frame.columns:
                frame[column] = None
        with self._lock:
            self._cache[key] = (table.version(), frame)
        return frame

    def rows(self, name: str, doc_id: str, columns: list[str]) -> list[dict[str, Any]]:
        """The rows of ``name`` for one document (a filter pushed down to the files)."""
        import pyarrow.dataset as ds
        from deltalake import DeltaTable

        if not self.exists(name):
            return []
        dataset = DeltaTable(str(self.folder / name)).to_pyarrow_dataset()
        present = [c for c in columns if c in dataset.schema.names]
        return dataset.to_table(columns=present, filter=ds.field("doc_id") == doc_id).to_pylist()

    def versions(self, *names: str) -> tuple[int, ...]:
        """The tables' Delta versions (-1 for a table not written yet): what a cached view depends on."""
        from deltalake import DeltaTable

        return tuple(DeltaTable(str(self.folder / n)).version() if self.exists(n) else -1 for n in names)

    def pairs(self) -> list[Pair]:
        """Every generated response with its pair's score, source and newest review; built once per set of table
        versions (a page asks for it several times; a label or a job's commit makes the next call rebuild it)."""
        key = self.versions("responses", "pairs_filtered", "docs_raw", review_table.TABLE)
        with self._lock:
            if self._pairs is not None and self._pairs[0] == key:
                return self._pairs[1]
        built = self._build_pairs()
        with self._lock:
            self._pairs = (key, built)
        return built

    def _build_pairs(self) -> list[Pair]:
        responses = self.frame("responses", LIST_COLUMNS)
        filtered = self.frame("pairs_filtered", ["doc_id", "step_version", "instruction_version", "expected_score"])
        docs = self.frame("docs_raw", ["doc_id", "source"])
        scores = {(r.doc_id, r.step_version): (r.instruction_version, r.expected_score)
                  for r in filtered.itertuples(index=False)}  # fmt: skip
        sources = dict(zip(docs["doc_id"], docs["source"], strict=True))
        labels = self.labels()
        out = []
        for r in responses.itertuples(index=False):
            version, score = scores.get((r.doc_id, r.source_version), (r.source_version, None))
            label, reason = labels.get((r.doc_id, r.step_version), (None, None))
            out.append(Pair(r.doc_id, r.step_version, r.kind, r.source_version, r.instruction, r.response, r.status,
                            version, None if score is None or score != score else float(score),
                            sources.get(r.doc_id), label, reason))  # fmt: skip
        return out

    def pair(self, doc_id: str, step_version: str) -> Pair:
        found = [p for p in self.pairs() if p.doc_id == doc_id and p.step_version == step_version]
        if not found:
            raise NotFound(f"no response {doc_id} @ {step_version}")
        return found[0]

    def document(self, doc_id: str) -> str:
        rows = self.rows("docs_clean", doc_id, ["doc_id", "text"])
        return (rows[0]["text"] if rows else None) or ""

    def judge_output(self, pair: Pair) -> tuple[str | None, int | None]:
        """The judge's text and score for the pair's instruction (the newest scoring of it)."""
        columns = ["doc_id", "pair_kind", "instruction_version", "raw_output", "score", "created_at"]
        rows = [
            r
            for r in self.rows("scores", pair.doc_id, columns)
            if r.get("pair_kind") == "matched" and r.get("instruction_version") == pair.instruction_version
        ]
        if not rows:
            return None, None
        best = max(rows, key=lambda r: r.get("created_at") or datetime.min.replace(tzinfo=timezone.utc))
        return best.get("raw_output"), best.get("score")

    def labels(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        """(doc_id, step_version) → (label, reason) of the newest review."""
        frame = self.frame(review_table.TABLE, ["doc_id", "step_version", "label", "reason", "reviewed_at",
                                                "review_id"])  # fmt: skip
        if frame.empty:
            return {}
        frame = frame.sort_values(["reviewed_at", "review_id"])
        return {(r.doc_id, r.step_version): (r.label, r.reason) for r in frame.itertuples(index=False)}

    def history(self, doc_id: str, step_version: str) -> list[dict[str, Any]]:
        rows = self.rows(review_table.TABLE, doc_id, review_table.COLUMNS)
        return sorted((r for r in rows if r["step_version"] == step_version), key=lambda r: r["reviewed_at"],
                      reverse=True)  # fmt: skip

    def step_runs(self) -> list[dict[str, Any]]:
        from backforth.lineage import TABLE

        if not self.exists(TABLE):
            return []
        from deltalake import DeltaTable

        return DeltaTable(str(self.folder / TABLE)).to_pyarrow_table().to_pylist()

    # -- writing ------------------------------------------------------------------------------------------------
    def add_review(self, pair: Pair, label: str, reviewer: str, reason: str | None = None,
                   instruction: str | None = None, response: str | None = None,
                   note: str | None = None) -> str:  # fmt: skip
        """Append one review of ``pair`` (an existing response: the caller looked it up); returns its id."""
        import pyarrow as pa
        from deltalake import write_deltalake

        if label not in review_table.LABELS:
            raise ValueError(f"label must be one of {', '.join(review_table.LABELS)}")
        if label == "reject" and reason not in review_table.REASONS:
            raise ValueError(f"a rejection needs a reason: one of {', '.join(review_table.REASONS)}")
        edit = label == "edit"
        new_i = instruction if edit and (instruction or "").strip() and instruction != pair.instruction else None
        new_r = response if edit and (response or "").strip() and response != pair.response else None
        if label == "edit" and new_i is None and new_r is None:
            raise ValueError("an edit changes the instruction or the response")
        review_id = uuid.uuid4().hex
        row = {"review_id": review_id, "doc_id": pair.doc_id, "step_version": pair.step_version, "kind": pair.kind,
               "instruction_version": pair.instruction_version, "label": label,
               "reason": reason if label == "reject" else None,
               "instruction": new_i, "response": new_r,
               "reviewer": reviewer, "note": note or None, "reviewed_at": datetime.now(timezone.utc)}  # fmt: skip
        data = pa.Table.from_pylist([row], schema=review_table.arrow_schema())
        for attempt in range(5):  # two app processes appending at once: delta-rs refuses one commit; try again
            try:
                write_deltalake(str(self.folder / review_table.TABLE), data, mode="append")
                return review_id
            except Exception as exc:  # noqa: BLE001 - only commit conflicts are retried
                if "onflict" not in str(exc) and "CommitFailed" not in type(exc).__name__ or attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))
        return review_id
