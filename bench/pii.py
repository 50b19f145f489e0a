"""PII redaction (udfs/pii.py) on real documentation pages: how many pages and spans each type redacts, what it
redacted (a sample to read by eye) and what it costs per page, in one Python process (no Spark).

The pages are bench/realdocs.py's good pages (real manuals and man pages, built and cached on first use).

    .venv/bin/python bench/pii.py                      # every page, 3 timed rounds, 10 samples per type
    .venv/bin/python bench/pii.py --samples 40 --rounds 5

The last line: ``pages=… pages_redacted=… pii.<type>=… (spans) pages.<type>=… ms_per_page=… ms_per_page_no_at=…``
(the last: pages without an '@', where the e-mail pass is skipped).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10, help="redacted spans shown per type, with context")
    args = parser.parse_args(argv)

    from realdocs import cache_dir, real_pages

    from backforth.udfs.pii import _PASSES, TYPES, redact_pii

    pages = [p for p in real_pages(cache_dir()) if "/translations/" not in p["path"]]
    texts = [p["text"] for p in pages]
    print(f"[pii] {len(texts)} real pages, mean {sum(map(len, texts)) / len(texts) / 1000:.1f} k characters",
          file=sys.stderr)  # fmt: skip

    def timed(subset: list[str]) -> float:
        runs = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for text in subset:
                redact_pii(text)
            runs.append(time.perf_counter() - started)
        return statistics.median(runs) / len(subset) * 1000

    spans, pages_with, redacted = Counter(), Counter(), 0
    for text in texts:
        counts = redact_pii(text)[1]
        spans.update(counts)
        pages_with.update(t for t, n in counts.items() if n)
        redacted += any(counts.values())
    found: dict[str, list[str]] = {t: [] for t in TYPES}
    for page in pages:
        text = page["text"]
        for name, patterns, valid, maybe in _PASSES:
            if maybe(text):
                for pattern in patterns:
                    where = page["path"].rsplit("/", 1)[-1]
                    found[name] += [f"{where}: …{text[max(0, m.start() - 40) : m.end() + 20]}…"
                                    for m in pattern.finditer(text) if valid(m)]  # fmt: skip
    rng = random.Random(1)
    for name, items in found.items():
        print(f"== {name}: {len(items)} spans")
        for item in rng.sample(items, min(args.samples, len(items))):
            print("   ", item.replace("\n", "⏎"))
    per_page = timed(texts)
    no_at = timed([t for t in texts if "@" not in t])
    figures = {"pages": len(texts), "pages_redacted": redacted}
    figures |= {f"pii.{t}": spans[t] for t in TYPES} | {f"pages.{t}": pages_with[t] for t in TYPES}
    figures |= {"ms_per_page": round(per_page, 3), "ms_per_page_no_at": round(no_at, 3)}
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
