"""A benchmark corpus of real technical documentation, with injected junk and near-duplicates of known Jaccard.

The pages are real: the HTML manuals and references that Debian ships as documentation packages (Python 3.11's
library and language reference, PostgreSQL 15's manual, Git's manual pages and guides, the Linux kernel's
documentation) plus the C library and system-call man pages, extracted to text with the same extractor as ingest's
WARC reader. Every page is a *good* page: documentation a user would want to keep. Then, seeded:

* **junk** of named kinds (keyword stuffing, boilerplate, link farms, repeated lines, symbol soup, lorem ipsum,
  gibberish, navigation menus, other languages, fragments, binary noise), built from words of the real pages where
  it matters, about 10 % of the corpus;
* **near-duplicates**: copies of 12 % of the good pages with random word substitutions until their word 5-gram
  Jaccard (dedup's tokenisation, ``udfs/minhash.tokenize``) falls in a chosen band (0.5-0.6 … 0.9-1.0, or exact).

Outputs, in ``--out``: ``dolma/part-*.json.gz`` (ingest's ``dolma`` format), ``warc/pages.warc.gz`` (the good pages'
own HTML, junk and copies wrapped in minimal HTML), and ``truth.jsonl`` (id, kind, junk kind or source package, the
original of a copy and the true Jaccard). The packages are fetched with ``apt-get download`` (no root needed) into
``$BACKFORTH_CACHE/realdocs`` and extracted text is cached there too.

    python bench/realdocs.py build --out /tmp/realdocs
    python bench/realdocs.py run --out /tmp/realdocs        # build if needed, ingest → clean → dedup, then score
    python bench/realdocs.py score --out /tmp/realdocs --data-dir /tmp/realdocs/data

The last line printed by ``run`` and ``score`` holds key=value figures: good_dropped, junk_recall, the rules' drops,
dedup pair precision/recall/F1 and recall per Jaccard band, clean_docs_per_s. The same figures (as metrics), the
per-rule plot and the whole result go to an MLflow run of the ``backforth-bench`` experiment in the data folder's
store, beside the steps' own runs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Debian 12's documentation packages: (package, source label, folder of pages inside the package)
PACKAGES = [
    ("python3.11-doc", "python", "usr/share/doc/python3.11/html"),
    ("postgresql-doc-15", "postgresql", "usr/share/doc/postgresql-doc-15/html"),
    ("git-doc", "git", "usr/share/doc/git-doc"),
    ("linux-doc-6.12", "linux", "usr/share/doc/linux-doc-6.12/html"),
    ("manpages-dev", "man", "usr/share/man"),
]
PAGES_VERSION = "v1"  # bump when extraction changes
# The statistics of the line and repetition rules, plotted for good pages and junk, with the rule's threshold
RULE_STATS = [("dup_5gram_share", "max_dup_5gram_share"), ("top_2gram_share", None), ("short_line_share",
              "max_short_line_share"), ("dup_line_share", "max_dup_line_share"), ("dup_paragraph_share",
              "max_dup_paragraph_share"), ("hash_ellipsis_ratio", "max_hash_ellipsis_ratio"), ("bullet_line_share",
              "max_bullet_line_share"), ("symbol_char_share", "max_symbol_char_share")]  # fmt: skip
JUNK_SHARE, DUP_SHARE = 0.10, 0.12
BANDS = [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0), (1.0, 1.0)]  # the last: exact copies
BY_DESIGN = {"too_short", "too_many_tokens", "too_long"}  # drops a good page may get on purpose
NGRAM, THRESHOLD = 5, 0.6  # dedup's defaults: word 5-grams, estimated Jaccard ≥ 0.6


def log(message: str) -> None:
    print(f"[realdocs] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("BACKFORTH_CACHE", Path.home() / ".cache" / "backforth")).expanduser() / "realdocs"


# ---------------------------------------------------------------------------------------------------------------
# Real pages


def fetch_packages(cache: Path) -> Path:
    """Download and unpack the documentation packages once; returns the folder they are unpacked in."""
    root, debs = cache / "root", cache / "debs"
    done = cache / ".unpacked"
    if done.is_file():
        return root
    debs.mkdir(parents=True, exist_ok=True)
    names = [p for p, _, _ in PACKAGES]
    log(f"downloading {', '.join(names)} (apt-get download)")
    got = subprocess.run(["apt-get", "download", *names], cwd=debs, capture_output=True, text=True)
    if got.returncode != 0:
        raise SystemExit(f"apt-get download failed (a Debian 12 package source is needed):\n{got.stderr[-2000:]}")
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    done.touch()
    return root


def html_pages(root: Path) -> Iterator[tuple[str, str]]:
    for _, source, folder in PACKAGES:
        if source == "man":
            continue
        for path in sorted((root / folder).rglob("*.html")):
            if "/translations/" not in str(path):  # the kernel's Chinese, Japanese, ... pages: the corpus is English
                yield source, str(path.relative_to(root))


def man_text(path: Path) -> str | None:
    """A man page rendered to plain text (no hyphenation or justification, overstrikes removed)."""
    if path.stat().st_size < 200:  # ".so" redirects to another page
        return None
    env = {**os.environ, "MANWIDTH": "100"}
    shown = subprocess.run(["man", "--nh", "--nj", "-l", str(path)], capture_output=True, env=env)
    plain = subprocess.run(["col", "-bx"], input=shown.stdout, capture_output=True).stdout.decode("utf-8", "replace")
    return plain.strip() or None


def extract(item: tuple[str, str, str]) -> dict | None:
    from backforth.readers import html_main_text

    source, rel, root = item
    path = Path(root) / rel
    text = man_text(path) if source == "man" else html_main_text(path.read_bytes(), None)
    return {"source": source, "path": rel, "text": text} if text else None


def real_pages(cache: Path) -> list[dict]:
    """Every page's extracted text (cached): [{source, path, text}]."""
    pages_file = cache / f"pages-{PAGES_VERSION}.jsonl.gz"
    if pages_file.is_file():
        with gzip.open(pages_file, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    root = fetch_packages(cache)
    items = [(s, rel, str(root)) for s, rel in html_pages(root)]
    items += [("man", str(p.relative_to(root)), str(root)) for p in sorted((root / "usr/share/man").rglob("*.gz"))
              if p.is_file() and not p.is_symlink()]  # fmt: skip
    log(f"extracting text from {len(items)} pages (once; cached in {pages_file})")
    from multiprocessing import Pool

    pages, started = [], time.perf_counter()
    with Pool(os.cpu_count() or 2) as pool:
        for i, page in enumerate(pool.imap(extract, items, chunksize=16), 1):
            if page:
                pages.append(page)
            if i % 500 == 0:
                log(f"  {i}/{len(items)} pages, {time.perf_counter() - started:.0f} s")
    with gzip.open(pages_file, "wt", encoding="utf-8") as f:
        for page in pages:
            f.write(json.dumps(page, ensure_ascii=False) + "\n")
    return pages


# ---------------------------------------------------------------------------------------------------------------
# Junk of named kinds

BOILERPLATE_LINES = [
    "We use cookies to improve your experience. Accept all cookies or manage your preferences.",
    "Sign in to your account to continue.", "Subscribe to our newsletter for weekly updates.",
    "Privacy policy | Terms of use | Contact us", "All rights reserved.", "Skip to main content",
    "Please enable JavaScript in your browser to view this page.", "Log in or register to post comments.",
    "Share this page on social media.", "This site uses tracking technologies for analytics.",
    "Your session has expired. Please log in again.", "Manage consent preferences",
]  # fmt: skip
OTHER_LANGUAGES = [
    "Die Installation dauert nur wenige Minuten, wenn alle Pakete bereits heruntergeladen wurden.",
    "Bitte prüfen Sie die Konfiguration, bevor Sie den Dienst neu starten.",
    "El servidor guarda una copia de cada registro durante treinta días antes de borrarla.",
    "Para cambiar la contraseña, abra el menú de usuario y elija la opción correspondiente.",
    "Le fichier de configuration se trouve dans le répertoire personnel de chaque utilisateur.",
    "Nous vous conseillons de sauvegarder vos données avant toute mise à jour importante.",
    "Il programma legge i dati in ingresso e scrive un riepilogo alla fine di ogni giornata.",
    "De gebruiker kan de instellingen op elk moment wijzigen via het beheerscherm.",
]
JUNK_KINDS = ["keyword_stuffing", "boilerplate", "link_farm", "repeated_lines", "symbol_soup", "lorem_ipsum",
              "gibberish", "navigation", "other_language", "fragment", "binary_noise"]  # fmt: skip


def words_of(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z][a-z]{2,}", text)]


def junk(kind: str, page: dict, rng: np.random.Generator) -> str:
    """One junk document of ``kind``; ``page`` (a real page) lends its words where realism needs them."""
    vocab = words_of(page["text"]) or ["data"]
    pick = lambda n: [vocab[i] for i in rng.integers(0, len(vocab), n)]  # noqa: E731
    if kind == "keyword_stuffing":
        keys = pick(3)
        pattern = ["best", *keys[:2], "cheap", *keys[1:], "buy", keys[0], "online", "top", *keys]
        return " ".join(pattern * int(rng.integers(12, 30)))
    if kind == "boilerplate":
        return "\n".join(BOILERPLATE_LINES[i] for i in rng.integers(0, len(BOILERPLATE_LINES), 30))
    if kind == "link_farm":
        return "\n".join(f"{w.title()} deals: https://www.{w.lower()}-{v.lower()}.example/{i}"
                         for i, (w, v) in enumerate(zip(pick(40), pick(40), strict=True)))  # fmt: skip
    if kind == "repeated_lines":
        lines = [line for line in page["text"].split("\n") if len(line.split()) >= 6] or ["click here to win a prize"]
        line = lines[int(rng.integers(0, len(lines)))]
        return "\n".join([line] * int(rng.integers(15, 40)) + pick(3))
    if kind == "symbol_soup":
        parts = ["var", "function(", "){return", "&&", "||", "?", ":", "=>", "[", "]", "{", "}", ";", "!0", "void 0"]
        return "".join(parts[i] + chr(97 + int(rng.integers(0, 26))) for i in rng.integers(0, len(parts), 900))
    if kind == "lorem_ipsum":
        latin = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".split()
        return " ".join(latin[i] for i in rng.integers(0, len(latin), 300))
    if kind == "gibberish":
        letters = "bcdfghjklmnpqrstvwxz"
        return " ".join("".join(letters[j] for j in rng.integers(0, 20, int(rng.integers(2, 16)))) for _ in range(300))
    if kind == "navigation":
        menu = [w.title() for w in pick(12)]
        return "\n".join(" | ".join(menu[i : i + 4]) for i in range(0, 12, 2) for _ in range(4)) + "\nHome"
    if kind == "other_language":
        return " ".join(OTHER_LANGUAGES[i] for i in rng.integers(0, len(OTHER_LANGUAGES), 14))
    if kind == "fragment":
        return " ".join(pick(int(rng.integers(8, 30))))
    if kind == "binary_noise":
        noise = bytes(rng.integers(0, 256, 3000, dtype=np.uint8)).decode("latin-1")
        return "".join(ch if ch.isprintable() else "\ufffd" for ch in noise)
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------------------------
# Near-duplicates of known Jaccard


def shingles(text: str) -> set[int]:
    from backforth.udfs.minhash import tokenize

    tokens = tokenize(text)
    return {hash(tuple(tokens[i : i + NGRAM])) for i in range(max(0, len(tokens) - NGRAM + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_copy(text: str, band: tuple[float, float], rng: np.random.Generator) -> tuple[str, float] | None:
    """``text`` with words replaced, one at a time at random positions, until its Jaccard with the original lies
    in ``band``; None when a step jumps over the band."""
    low, high = band
    if low == high == 1.0:
        return text, 1.0
    original = shingles(text)
    tokens = re.split(r"(\s+)", text)  # words and the spaces between them, so layout survives
    spots = [i for i, t in enumerate(tokens) if t.strip()]
    order = rng.permutation(len(spots))
    filler = words_of(text) or ["data"]
    step = max(1, len(spots) // 400)
    for start in range(0, len(order), step):
        for k in order[start : start + step]:
            tokens[spots[k]] = filler[int(rng.integers(0, len(filler)))] + "x"
        score = jaccard(original, shingles("".join(tokens)))
        if score < low:
            return None
        if score < high:
            return "".join(tokens), score
    return None


# ---------------------------------------------------------------------------------------------------------------
# Build


def build(out: Path, seed: int) -> dict[str, int]:
    """Write the corpus (Dolma and WARC forms) and its truth file into ``out``."""
    rng = np.random.default_rng(seed)
    pages = [p for p in real_pages(cache_dir()) if "/translations/" not in p["path"]]
    log(f"{len(pages)} real pages")
    docs: list[dict] = []
    for page in pages:
        uid = hashlib.sha1(page["path"].encode()).hexdigest()[:16]
        docs.append({"id": f"p-{uid}", "text": page["text"], "kind": "good", "source": page["source"],
                     "path": page["path"]})  # fmt: skip
    n_junk = int(len(pages) * JUNK_SHARE)
    for i in range(n_junk):
        kind = JUNK_KINDS[i % len(JUNK_KINDS)]
        page = pages[int(rng.integers(0, len(pages)))]
        docs.append({"id": f"j-{i:05d}", "text": junk(kind, page, rng), "kind": "junk", "source": kind})
    eligible = [d for d in docs[: len(pages)] if len(d["text"].split()) >= 150]
    chosen = rng.choice(len(eligible), size=min(len(eligible), int(len(pages) * DUP_SHARE)), replace=False)
    made = 0
    for n, index in enumerate(chosen):
        base = eligible[int(index)]
        band = BANDS[n % len(BANDS)]
        for _ in range(4):
            copy = near_copy(base["text"], band, rng)
            if copy:
                break
        if not copy:
            continue
        made += 1
        docs.append({"id": f"d-{made:05d}", "text": copy[0], "kind": "dup", "source": base["source"],
                     "of": base["id"], "jaccard": round(copy[1], 4)})  # fmt: skip
    order = rng.permutation(len(docs))
    docs = [docs[int(i)] for i in order]
    write_dolma(out / "dolma", docs)
    root = cache_dir() / "root"
    write_warc(out / "warc" / "pages.warc.gz", docs, root)
    with open(out / "truth.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({k: v for k, v in d.items() if k != "text"}) + "\n")
    counts = Counter(d["kind"] for d in docs)
    log(f"wrote {len(docs)} documents: {dict(counts)} into {out}")
    return dict(counts)


def write_dolma(folder: Path, docs: list[dict], per_shard: int = 2000) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(0, len(docs), per_shard):
        with gzip.open(folder / f"part-{shard // per_shard:04d}.json.gz", "wt", encoding="utf-8") as f:
            for d in docs[shard : shard + per_shard]:
                url = f"https://docs.example/{d['id']}"
                row = {"id": d["id"], "text": d["text"], "source": "realdocs", "added": "2026-12-02",
                       "created": "2026-12-02", "metadata": {"url": url, "kind": d["kind"]}}  # fmt: skip
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_warc(path: Path, docs: list[dict], root: Path) -> None:
    """The same documents as HTTP responses: a good page's own HTML, the rest wrapped in minimal HTML."""
    import html as htmllib

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        for d in docs:
            if d["kind"] == "good" and d["path"].endswith(".html"):
                body = (root / d["path"]).read_bytes()
            else:
                paragraphs = "".join(f"<p>{htmllib.escape(p)}</p>\n" for p in d["text"].split("\n\n"))
                body = f"<html><head><title>{d['id']}</title></head><body>{paragraphs}</body></html>".encode()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            record = writer.create_warc_record(f"https://docs.example/{d['id']}", "response",
                                               payload=io.BytesIO(body), http_headers=headers)  # fmt: skip
            writer.write_record(record)


# ---------------------------------------------------------------------------------------------------------------
# Run and score


def run_steps(out: Path, data: Path, form: str) -> dict[str, float]:
    """ingest → clean → dedup in one process (one Spark session), each step timed on its own."""
    from backforth.config import load_settings
    from backforth.registry import get_job
    from backforth.runner import run_job
    from backforth.spark import get_spark

    inputs = {"dolma": f"[{{path: '{out / 'dolma'}', format: dolma}}]",
              "warc": f"[{{path: '{out / 'warc'}', format: warc, source: realdocs}}]"}[form]  # fmt: skip
    times, spark = {}, None
    for step in ("ingest", "clean", "dedup"):
        spec = get_job(step)
        overrides = [f"data_dir={data}"] + ([f"job.inputs={inputs}"] if step == "ingest" else [])
        settings = load_settings(step, spec.config_cls, env="local", overrides=overrides)
        spark = spark or get_spark(settings)
        started = time.perf_counter()
        outcome = run_job(spec, settings, spark)
        times[step] = time.perf_counter() - started
        times[f"{step}_metrics"] = outcome.metrics  # type: ignore[assignment]
        log(f"{step}: {times[step]:.1f} s")
    return times


def score(out: Path, data: Path) -> dict[str, Any]:
    """Compare the tables in ``data`` with ``out/truth.jsonl``."""
    from backforth.config import Settings
    from backforth.spark import get_spark

    truth = {}
    with open(out / "truth.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            truth[row["id"]] = row
    spark = get_spark(Settings(data_dir=str(data)))
    rows = spark.sql(
        "SELECT r.source_id, c.drop_reason, c.failed_rules, c.stats, d.cluster_id, d.is_kept, c.text "
        "FROM backforth.docs_raw r JOIN backforth.docs_clean c USING (doc_id) "
        "LEFT JOIN backforth.docs_dedup d USING (doc_id)"
    ).collect()
    got = {r["source_id"]: r for r in rows}
    missing = [i for i in truth if i not in got]
    result: dict[str, Any] = {"documents": len(truth), "missing": len(missing)}

    good = [i for i, t in truth.items() if t["kind"] == "good" and i in got]
    first = Counter(got[i]["drop_reason"] for i in good if got[i]["drop_reason"])
    design = sum(n for reason, n in first.items() if reason in BY_DESIGN)
    quality = sum(n for reason, n in first.items() if reason not in BY_DESIGN)
    result["good_pages"] = len(good)
    result["good_dropped"] = quality / len(good)
    result["good_dropped_by_design"] = design / len(good)
    result["good_dropped_by_rule"] = dict(first.most_common())
    sole = Counter(got[i]["failed_rules"][0] for i in good if got[i]["failed_rules"] and
                   len(got[i]["failed_rules"]) == 1)  # fmt: skip
    result["good_dropped_sole_rule"] = dict(sole.most_common())
    per_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in good:
        per_source[truth[i]["source"]][0] += 1
        reason = got[i]["drop_reason"]
        per_source[truth[i]["source"]][1] += int(bool(reason) and reason not in BY_DESIGN)
    result["good_dropped_by_source"] = {s: round(d / n, 4) for s, (n, d) in sorted(per_source.items())}

    junk_ids = [i for i, t in truth.items() if t["kind"] == "junk" and i in got]
    caught = [i for i in junk_ids if got[i]["drop_reason"]]
    result["junk_recall"] = len(caught) / len(junk_ids) if junk_ids else float("nan")
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in junk_ids:
        per_kind[truth[i]["source"]][0] += 1
        per_kind[truth[i]["source"]][1] += int(bool(got[i]["drop_reason"]))
    result["junk_recall_by_kind"] = {k: round(c / n, 4) for k, (n, c) in sorted(per_kind.items())}

    result.update(score_dedup(truth, got))
    plot_rules(out / "rule_stats.png", [got[i]["stats"] for i in good], [got[i]["stats"] for i in junk_ids])
    return result


def plot_rules(path: Path, good: list, junk: list) -> None:
    """One panel per rule statistic: its distribution over good pages and over junk, and the rule's threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backforth.jobs.clean import CleanConfig

    cfg = CleanConfig()
    limits = {**vars(cfg.thresholds), "max_dup_5gram_share": cfg.max_dup_5gram_share}
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    for ax, (stat, limit) in zip(axes.flat, RULE_STATS, strict=True):
        bins = np.linspace(0, 1, 41)
        for rows, label, color in ((good, "good pages", "tab:blue"), (junk, "junk", "tab:red")):
            values = np.clip([r[stat] for r in rows], 0, 1)
            ax.hist(values, bins=bins, alpha=0.55, color=color, label=f"{label} ({len(values)})", density=True)
        threshold = limits.get(limit) if limit else cfg.max_top_ngram_shares[0]
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{stat} (drop > {threshold})", fontsize=9)
        ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Clean rules on real documentation (bench/realdocs.py): statistic per page, density, log scale")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    log(f"rule plot: {path}")


def score_dedup(truth: dict, got: dict) -> dict[str, Any]:
    """Pairs: a copy and its original are a true pair when their Jaccard ≥ dedup's threshold (exact copies
    included); a predicted pair is two documents in one cluster. Pairs the dedup step joins that the corpus did not
    make are checked by their own Jaccard: real documentation has duplicates of its own."""
    family = {i: t.get("of", i) for i, t in truth.items()}
    clusters: dict[str, list[str]] = defaultdict(list)
    for i, r in got.items():
        if r["cluster_id"] is not None:
            clusters[r["cluster_id"]].append(i)
    predicted = [(a, b) for members in clusters.values() for n, a in enumerate(members) for b in members[n + 1 :]]
    correct, natural = 0, 0
    for a, b in predicted:
        if family.get(a) == family.get(b):
            correct += 1
        elif jaccard(shingles(got[a]["text"]), shingles(got[b]["text"])) >= THRESHOLD:
            natural += 1
    copies = [(t["of"], i, t["jaccard"]) for i, t in truth.items() if t["kind"] == "dup"]
    both_kept = [(a, b, j) for a, b, j in copies if a in got and b in got and got[a]["cluster_id"] is not None
                 and got[b]["cluster_id"] is not None]  # fmt: skip
    found = {(a, b) for a, b, _ in both_kept if got[a]["cluster_id"] == got[b]["cluster_id"]}
    positives = [(a, b) for a, b, j in both_kept if j >= THRESHOLD]
    tp = sum(1 for p in positives if p in found)
    precision = (correct + natural) / len(predicted) if predicted else 1.0
    recall = tp / len(positives) if positives else 1.0
    bands = {}
    for low, high in BANDS:
        members = [(a, b) for a, b, j in both_kept if (low <= j < high) or (low == high == j)]
        label = "exact" if low == high else f"{low:.1f}-{high:.1f}"
        bands[label] = round(sum(1 for p in members if p in found) / len(members), 4) if members else float("nan")
    return {
        "dedup_precision": precision,
        "dedup_recall": recall,
        "dedup_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "dedup_predicted_pairs": len(predicted),
        "dedup_natural_pairs": natural,
        "dedup_recall_by_band": bands,
    }


def key_values(result: dict[str, Any]) -> str:
    flat = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in flat.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "run", "score"])
    parser.add_argument("--out", type=Path, required=True, help="corpus folder (built here)")
    parser.add_argument("--data-dir", type=Path, help="backforth data folder (default: OUT/data)")
    parser.add_argument("--form", choices=["dolma", "warc"], default="dolma", help="which form `run` ingests")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    data = args.data_dir or args.out / "data"
    if args.command in ("build", "run") and not (args.out / "truth.jsonl").is_file():
        build(args.out, args.seed)
    if args.command == "build":
        return
    result: dict[str, Any] = {}
    if args.command == "run":
        times = run_steps(args.out, data, args.form)
        docs_in = times["clean_metrics"].get("docs_in", 0)  # type: ignore[union-attr]
        result.update({f"{s}_seconds": round(times[s], 1) for s in ("ingest", "clean", "dedup")})
        result["clean_docs_per_s"] = docs_in / times["clean"] if times["clean"] else float("nan")
    result.update(score(args.out, data))
    run_id = log_to_mlflow(data, args.out, result)
    print(json.dumps(result, indent=2, default=str))
    log(f"figures and the rule plot logged to MLflow run {run_id} (experiment backforth-bench, store of {data})")
    print(key_values(result))


def log_to_mlflow(data: Path, out: Path, result: dict[str, Any]) -> str:
    """The figures as metrics, the per-rule plot and the whole result as artifacts, in an MLflow run of the
    ``backforth-bench`` experiment of the data folder's store (where the steps' own runs are)."""
    import mlflow

    from backforth.config import Settings
    from backforth.runner import setup_mlflow

    settings = Settings(data_dir=str(data))
    settings.mlflow.experiment = "backforth-bench"
    setup_mlflow(settings)
    flat = dict(pair.split("=", 1) for pair in key_values(result).split())
    metrics = {}
    for key, value in flat.items():
        try:
            metrics[key.replace("-", "_")] = float(value)
        except ValueError:
            continue
    with mlflow.start_run(run_name="realdocs") as run:
        mlflow.log_metrics(metrics)
        mlflow.log_dict(result, "realdocs.json")
        if (out / "rule_stats.png").is_file():
            mlflow.log_artifact(str(out / "rule_stats.png"))
    return run.info.run_id


if __name__ == "__main__":
    main()
