"""Build the seed fixture from the hand-written conversations in data/sample/seed/source/conversations.yaml.

Run with the project's virtualenv: ``.venv/bin/python data/sample/seed/build.py``. Output is byte-for-byte
reproducible (uuid5 ids, fixed dates, gzip mtime 0) and committed, so tests and the demo need no build step.

- ``oasst_trees.jsonl.gz``: OpenAssistant OASST1's published tree layout, one conversation tree per line
  (``message_tree_id``, ``tree_state``, ``prompt``: the prompter's root message with nested ``replies``; every message
  has ``message_id``, ``parent_id``, ``role``, ``lang``, ``text``, ``rank``, ``deleted``, review fields, ...), plus two
  lines that are not trees at all (malformed JSON, a JSON array).
- ``pairs.jsonl``: plain JSON lines with ``instruction`` and ``response``, plus broken lines.
"""

from __future__ import annotations

import gzip
import io
import json
import uuid
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source" / "conversations.yaml"
DATE = "2024-03-01T00:00:00.000000+00:00"
NAMESPACE = uuid.UUID("6f1c1d3e-8c55-4d0e-9d43-5a3b8e0f2a10")


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def message(spec: dict[str, Any], role: str, path: str, parent: str | None, tree_id: str, lang: str) -> dict:
    """One OASST message (and its replies, recursively)."""
    message_id = str(uuid.uuid5(NAMESPACE, path))
    own_lang = spec.get("lang", lang)
    replies = []
    for i, reply in enumerate(spec.get("replies") or []):
        child_role = reply.get("role", "assistant" if role == "prompter" else "prompter")
        replies.append(message(reply, child_role, f"{path}/{i}", message_id, tree_id, own_lang))
    return {
        "message_id": message_id,
        "parent_id": parent,
        "user_id": str(uuid.uuid5(NAMESPACE, f"user/{path}")),
        "created_date": DATE,
        "text": spec.get("text", spec.get("prompt")),
        "role": role,
        "lang": own_lang,
        "review_count": 3,
        "review_result": True,
        "deleted": bool(spec.get("deleted", False)),
        "rank": spec.get("rank") if role == "assistant" else None,
        "synthetic": False,
        "model_name": None,
        "detoxify": None,
        "message_tree_id": tree_id,
        "tree_state": "ready_for_export",
        "emojis": None,
        "replies": replies,
        "labels": None,
    }


def tree(spec: dict[str, Any], index: int) -> dict:
    tree_id = str(uuid.uuid5(NAMESPACE, f"tree/{index}"))
    root = message(spec, spec.get("root_role", "prompter"), f"tree/{index}", None, tree_id, spec.get("lang", "en"))
    root["message_id"] = tree_id  # OASST: the tree id is the root message's id
    for reply in root["replies"]:
        reply["parent_id"] = tree_id
    return {"message_tree_id": tree_id, "tree_state": "ready_for_export", "prompt": root, "origin": None}


def main() -> None:
    source = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    lines = [json.dumps(tree(spec, i), ensure_ascii=False) for i, spec in enumerate(source["trees"])]
    lines.insert(7, '{"message_tree_id": "broken", "prompt": {"text": "cut off mid-')  # malformed JSON
    lines.insert(20, '["a JSON array", "is not a tree"]')
    (HERE / "oasst_trees.jsonl.gz").write_bytes(gzip_bytes(("\n".join(lines) + "\n").encode("utf-8")))
    pairs = [
        json.dumps({k: v for k, v in p.items() if k != "case"} | {"id": f"pair-{i:02d}"}, ensure_ascii=False)
        for i, p in enumerate(source["pairs"])
    ]
    pairs.append('{"instruction": "What is 2 + 2?", "response": 4, "id": "pair-bad-type"}')
    (HERE / "pairs.jsonl").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    print(f"{len(source['trees'])} trees, {len(source['pairs'])} pairs written to {HERE}")


if __name__ == "__main__":
    main()
