"""Synthetic corpus with known near-duplicate groups, for benchmarking deduplication.

Base documents are English-looking prose (150-600 words, 5-12 paragraphs separated by blank lines) written by
filling sentence templates with words drawn from a fixed vocabulary of about two thousand common English words,
their inflections and made-up place/person names. Two unrelated documents share almost no word 5-gram.

Some bases get 1-3 variants, each derived from the base itself (never from another variant):

* ``edit1`` / ``edit2`` / ``edit3``: word substitutions, deletions and insertions at 1 %, 2 %, 3 % of the words;
* ``footer``: a site footer (share line, cookie notice, copyright) appended;
* ``swap``: two paragraphs trade places;
* ``truncate``: only the first 80-90 % of the words are kept;
* ``exact``: a verbatim copy.

Every variant of a base shares the base's group id; documents without variants are groups of one. The whole corpus
depends only on ``(n_docs, seed, dup_fraction)``.

    python bench/corpus_gen.py --check            # true 5-gram Jaccard of each variant kind against its base
    python bench/corpus_gen.py --docs 1000 --out corpus.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

NGRAM = 5
SPLIT = re.compile(r"\W+")
KINDS = ("edit1", "edit2", "edit3", "footer", "swap", "truncate", "exact")
EDIT_RATES = {"edit1": 0.01, "edit2": 0.02, "edit3": 0.03}
VOCAB_SEED = 20240601  # the vocabulary never changes with the corpus seed

NOUNS = """
river valley village market garden window kitchen teacher student doctor farmer engineer painter writer reader
driver council committee museum library station harbor bridge tower castle forest meadow island mountain desert
ocean coast field orchard vineyard factory workshop office studio theater school college university hospital
clinic bakery church temple palace cottage cabin barn stable fence gate road street avenue highway railway tunnel
canal lake pond stream fountain storm cloud thunder winter summer autumn morning evening night moment century
decade journey voyage mission project program system method process theory model pattern signal network engine
machine device tool instrument hammer needle thread fabric blanket carpet curtain mirror lamp candle basket bottle
barrel bucket kettle plate bowl spoon table chair desk cabinet drawer ladder rope chain wheel wagon carriage boat
ship anchor sail compass lantern map letter message report record journal diary notebook chapter volume story
legend poem song melody rhythm painting sculpture portrait landscape figure shadow color texture surface edge
corner center border region province county district territory nation empire kingdom republic government
parliament minister officer soldier captain sailor merchant trader banker lawyer judge witness neighbor stranger
visitor traveler pilgrim guide leader member partner rival friend family cousin parent daughter brother sister
infant elder audience crowd festival ceremony celebration holiday dinner breakfast supper harvest season crop
grain wheat barley onion carrot apple pear cherry lemon orange berry butter cheese flour spice herb flower blossom
branch root seed tree oak maple willow pine cedar birch pebble stone rock clay metal copper crystal pencil brush
canvas budget price profit wage salary contract agreement treaty dispute conflict question answer problem
solution argument decision opinion belief habit custom tradition language dialect accent sentence paragraph
ribbon button pocket collar jacket boot helmet shield sword arrow target horse donkey rabbit sparrow eagle falcon
beetle spider lizard turtle dolphin whale salmon trout meadowlark valley ridge canyon cliff plateau glacier marsh
swamp delta estuary lagoon reef harbor pier dock warehouse granary mill forge quarry mine kiln furnace chimney
roof wall floor ceiling staircase balcony courtyard hallway cellar attic pantry
"""
VERBS = """
walk talk open carry follow gather wander travel visit watch listen answer ask explain describe consider remember
mention suggest produce reduce improve prepare compare measure collect connect protect expect accept adjust
arrange attach attempt avoid borrow bake boil burn calculate celebrate change check clean climb count cover cross
dance decide deliver depend design destroy develop discover divide enjoy enter establish examine explore fill
finish fix fold form guard guide handle harvest help hunt imagine include increase inform inspect install invent
invite join jump kick land last laugh learn lift like limit list load locate look manage mark match mend move name
need notice obey observe offer order organize own paint pass perform plant play point polish pour praise predict
present preserve press prevent print promise provide pull push question raise reach record reflect refuse relax
release rely remain repair repeat replace reply report request rescue respect rest return reveal rush sail save
search settle share shout sign smile solve sort start stay study suffer supply support surround survive test thank
touch trace train transport treat trust turn type unite unlock urge use value vote wait want warn wash waste water
welcome wish wonder work worry yield borrow paddle sketch gather hover linger murmur whisper wrestle tremble
stumble scatter shelter anchor harvest sharpen soften brighten widen flatten fasten listen weaken loosen
"""
ADJECTIVES = """
quiet ancient bright calm careful cheerful clever cold cool curious dark deep distant dry eager early easy empty
famous fierce fine fresh friendly gentle golden grand green grey heavy hidden high honest huge humble large late
lazy light little lively local lonely long loud lucky modern narrow native natural nearby neat new noble northern
odd old ordinary pale patient plain pleasant polite poor precious proud pure quick rapid rare rich rough round
royal rural rusty sacred safe sharp short silent simple slow small smooth soft solid sour southern steady steep
strange strict strong sudden sunny sweet swift tall tender thick thin tidy tiny tired tough true urban usual vast
warm weak wealthy western wet whole wide wild wise wooden young brave broad busy cheap clean clear crisp crowded
dusty eastern elegant faint faithful fragile frozen gloomy graceful hollow hungry icy loyal marble merry misty
mild muddy nervous obscure orderly peaceful private public quaint remote restless rugged scarce secret serene
shallow shy sleepy slender sturdy subtle tranquil vivid weary amber crimson silver velvet hasty bitter
"""
ADVERBS = """
quickly slowly quietly carefully gently rarely often always never sometimes usually finally suddenly nearly barely
simply clearly openly freely happily eagerly calmly boldly briefly deeply fairly firmly gladly highly largely
lately merely mostly neatly partly plainly proudly rapidly readily roughly safely seldom sharply softly steadily
strongly swiftly truly warmly widely wisely already perhaps soon later together almost still again once twice
"""
PREPOSITIONS = """in on near across along behind beyond beside under over through toward around against within
without between among after before during past from into upon beneath"""
CONJUNCTIONS = "and but yet so while although because since until unless whereas though"
DETERMINERS = "the a this that every each one another their its our his her my your no"
PLURAL_DETERMINERS = "the some many these those their our several most few all both such two three four"

# One letter per slot: D/Q singular/plural determiner, A adjective, N/P singular/plural noun, V past verb,
# S third-person verb, B base verb, G -ing verb, R adverb, I preposition, C conjunction, M name; else literal.
TEMPLATES = [
    "D A N V D N I D N",
    "M V D A N I Q P",
    "I D N , Q P R V D N",
    "Q A P B D N I D A N",
    "D N I M S Q P C Q P B D N",
    "C D N V , M R V D A N",
    "D N of D N V R I D A N",
    "M and M V D N , C Q P B I D N",
    "G D A N V D N of M",
    "Q P I D N B R , C D N S D A N",
    "there was D A N I D N , and Q P V R",
    "D N S D N I D A N C D N V",
    "in D A N , M V D N and V Q A P",
    "R , D N V I D N",
    "D A N S R I Q P of D N",
    "few P V D N as R as D A N",
    "it was D A N , C Q P V D N I M",
    "M S D N of D A N",
]
FOOTER_SITES = ["Harbor Daily", "The Valley Courier", "Northwind Journal", "Copperfield Review", "Meadow Post"]
FOOTER_LINES = [
    ["Share this article: Facebook | Twitter | Email", "Share on Facebook, Twitter or by email."],
    [
        "We use cookies to improve your experience on {site}. By continuing you accept our cookie policy.",
        "This site uses cookies for analytics and personalised content. Manage your cookie settings at any time.",
    ],
    [
        "Copyright {year} {site}. All rights reserved.",
        "© {year} {site}. Reproduction without permission is prohibited.",
    ],
]


def _plural(word: str) -> str:
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _verb_forms(base: str) -> tuple[str, str, str]:
    """(past, third person, -ing) of a regular verb."""
    if base.endswith("e"):
        past, ing = base + "d", (base + "ing" if base.endswith("ee") else base[:-1] + "ing")
    elif base.endswith("y") and base[-2] not in "aeiou":
        past, ing = base[:-1] + "ied", base + "ing"
    else:
        past, ing = base + "ed", base + "ing"
    return past, _plural(base), ing


def _names(count: int) -> list[str]:
    """Made-up proper names from two syllables, the same on every run."""
    rng = np.random.default_rng(VOCAB_SEED)
    onsets = "b br c d dr f g gr h k l m n p r s st t th v w".split()
    vowels = "a e i o u ae ia ou".split()
    codas = ["", "n", "r", "l", "s", "th", "nd", "rk", "x", "m"]
    names: dict[str, None] = {}
    while len(names) < count:
        parts = [rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(2)]
        names["".join(parts).capitalize()] = None
    return list(names)


def _unique(words: str) -> list[str]:
    return list(dict.fromkeys(words.split()))


@dataclass
class Vocabulary:
    """Words per template slot; ``all_words`` (lowercase, no names) feeds substitutions and insertions."""

    slots: dict[str, list[str]] = field(default_factory=dict)
    all_words: list[str] = field(default_factory=list)

    @classmethod
    def build(cls) -> Vocabulary:
        nouns, verbs = _unique(NOUNS), _unique(VERBS)
        forms = [_verb_forms(v) for v in verbs]
        slots = {
            "N": nouns,
            "P": [_plural(n) for n in nouns],
            "B": verbs,
            "V": [f[0] for f in forms],
            "S": [f[1] for f in forms],
            "G": [f[2] for f in forms],
            "A": _unique(ADJECTIVES),
            "R": _unique(ADVERBS),
            "I": _unique(PREPOSITIONS),
            "C": _unique(CONJUNCTIONS),
            "D": _unique(DETERMINERS),
            "Q": _unique(PLURAL_DETERMINERS),
            "M": _names(800),
        }
        words = [w for key, ws in slots.items() if key != "M" for w in ws]
        return cls(slots=slots, all_words=list(dict.fromkeys(words)))

    def size(self) -> int:
        return len({w for ws in self.slots.values() for w in ws})


class _Draws:
    """Zipf-like word draws per slot, pre-sampled in blocks so a document costs a handful of numpy calls."""

    BLOCK = 256

    def __init__(self, vocab: Vocabulary, rng: np.random.Generator) -> None:
        self.rng, self.slots = rng, vocab.slots
        self.cdf = {}
        for key, words in vocab.slots.items():
            weights = 1.0 / np.arange(1, len(words) + 1) ** 0.6
            self.cdf[key] = np.cumsum(weights) / weights.sum()
        self.order = {key: rng.permutation(len(words)).tolist() for key, words in vocab.slots.items()}
        self.pending: dict[str, list[int]] = {key: [] for key in vocab.slots}

    def word(self, slot: str) -> str:
        queue = self.pending[slot]
        if not queue:
            queue.extend(np.searchsorted(self.cdf[slot], self.rng.random(self.BLOCK)).tolist())
        return self.slots[slot][self.order[slot][queue.pop()]]


def _sentence(draws: _Draws, template: str, topic: dict[str, list[str]], rng: np.random.Generator) -> list[str]:
    """One sentence as words with their punctuation attached; nouns and names favour the document's topic."""
    words: list[str] = []
    for slot in template.split():
        if slot == ",":
            words[-1] += ","
            continue
        if slot in topic and rng.random() < 0.3:
            words.append(topic[slot][int(rng.integers(len(topic[slot])))])
        else:
            words.append(draws.word(slot) if slot in draws.slots else slot)
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    words[0] = words[0][0].upper() + words[0][1:]
    words[-1] += "?" if rng.random() < 0.05 else "."
    return words


def _base_document(draws: _Draws, rng: np.random.Generator) -> list[list[str]]:
    """Paragraphs (lists of words) of about 150-600 words, at least five paragraphs."""
    target = int(rng.integers(150, 586))
    topic = {"N": [draws.word("N") for _ in range(6)], "M": [draws.word("M") for _ in range(2)]}
    sentences: list[list[str]] = []
    total = 0
    while total < target:
        sentences.append(_sentence(draws, TEMPLATES[int(rng.integers(len(TEMPLATES)))], topic, rng))
        total += len(sentences[-1])
    n_paragraphs = min(len(sentences), max(5, round(total / rng.uniform(50, 90))))
    ends = np.cumsum([len(s) for s in sentences])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, n_paragraphs) / n_paragraphs) + 1
    cuts = sorted(set(np.clip(cuts, 1, len(sentences) - 1).tolist()))
    bounds = [0, *cuts, len(sentences)]
    return [[w for s in sentences[a:b] for w in s] for a, b in zip(bounds, bounds[1:], strict=False)]


def render(paragraphs: list[list[str]]) -> str:
    return "\n\n".join(" ".join(p) for p in paragraphs)


def _locate(paragraphs: list[list[str]], position: int) -> tuple[int, int]:
    for index, paragraph in enumerate(paragraphs):
        if position < len(paragraph):
            return index, position
        position -= len(paragraph)
    return len(paragraphs) - 1, len(paragraphs[-1]) - 1


def _split_punct(word: str) -> tuple[str, str]:
    core = word.rstrip(",.?!;:")
    return core, word[len(core) :]


def edit_words(paragraphs: list[list[str]], rate: float, vocab: Vocabulary, rng: np.random.Generator) -> list:
    """Substitute, delete or insert single words at ``rate`` of the word count (at least one edit)."""
    paras = [list(p) for p in paragraphs]
    total = sum(len(p) for p in paras)
    for _ in range(max(1, round(rate * total))):
        pi, wi = _locate(paras, int(rng.integers(sum(len(p) for p in paras))))
        new = vocab.all_words[int(rng.integers(len(vocab.all_words)))]
        op = int(rng.integers(3))
        core, tail = _split_punct(paras[pi][wi])
        if op == 0:  # substitute, keeping capitalisation and punctuation
            paras[pi][wi] = (new.capitalize() if core[:1].isupper() else new) + tail
        elif op == 1 and len(paras[pi]) > 1:  # delete; the punctuation moves to the previous word
            del paras[pi][wi]
            if wi > 0 and tail:
                paras[pi][wi - 1] = _split_punct(paras[pi][wi - 1])[0] + tail
            elif wi == 0:
                paras[pi][0] = paras[pi][0][0].upper() + paras[pi][0][1:]
        else:  # insert after the word (a paragraph keeps its capitalised first word)
            paras[pi].insert(wi + 1, new)
    return paras


def add_footer(paragraphs: list[list[str]], rng: np.random.Generator) -> str:
    site = FOOTER_SITES[int(rng.integers(len(FOOTER_SITES)))]
    year = int(rng.integers(2015, 2025))
    lines = [options[int(rng.integers(len(options)))].format(site=site, year=year) for options in FOOTER_LINES]
    return render(paragraphs) + "\n\n" + "\n".join(lines)


def swap_paragraphs(paragraphs: list[list[str]], rng: np.random.Generator) -> list:
    paras = list(paragraphs)
    i, j = rng.choice(len(paras), size=2, replace=False)
    paras[i], paras[j] = paras[j], paras[i]
    return paras


def truncate(paragraphs: list[list[str]], rng: np.random.Generator) -> list:
    """The first 80-90 % of the words, paragraph breaks kept."""
    keep = int(sum(len(p) for p in paragraphs) * rng.uniform(0.80, 0.90))
    out = []
    for paragraph in paragraphs:
        if keep <= 0:
            break
        out.append(paragraph[:keep])
        keep -= len(paragraph)
    return out


def make_variant(kind: str, paragraphs: list[list[str]], vocab: Vocabulary, rng: np.random.Generator) -> str:
    """The text of one variant of a base document."""
    if kind in EDIT_RATES:
        return render(edit_words(paragraphs, EDIT_RATES[kind], vocab, rng))
    if kind == "footer":
        return add_footer(paragraphs, rng)
    if kind == "swap":
        return render(swap_paragraphs(paragraphs, rng))
    if kind == "truncate":
        return render(truncate(paragraphs, rng))
    if kind == "exact":
        return render(paragraphs)
    raise ValueError(f"unknown variant kind {kind!r}")


@dataclass
class Corpus:
    """Parallel lists: documents, ground-truth group ids and how each document was made ('base' or a kind)."""

    docs: list[dict[str, str]]
    groups: list[int]
    kinds: list[str]


def _group_sizes(n_docs: int, dup_fraction: float, rng: np.random.Generator) -> list[int]:
    """Sizes of the groups: enough 2-4 member groups for ``dup_fraction`` of the documents to be variants."""
    wanted = round(n_docs * dup_fraction)
    sizes: list[int] = []
    used = variants = 0
    while variants < wanted and used < n_docs - 1:
        extra = min(int(rng.integers(1, 4)), wanted - variants, n_docs - used - 1)
        sizes.append(1 + extra)
        used, variants = used + 1 + extra, variants + extra
    return sizes + [1] * (n_docs - used)


def generate_labelled(n_docs: int, seed: int = 0, dup_fraction: float = 0.3, progress: bool = False) -> Corpus:
    """The corpus with each document's kind; the order is shuffled and doc_ids follow the shuffled order."""
    rng = np.random.default_rng(seed)
    vocab = Vocabulary.build()
    draws = _Draws(vocab, rng)
    items: list[tuple[str, int, str]] = []
    for group, size in enumerate(_group_sizes(n_docs, dup_fraction, rng)):
        base = _base_document(draws, rng)
        items.append((render(base), group, "base"))
        for kind in rng.choice(KINDS, size=size - 1).tolist():
            items.append((make_variant(kind, base, vocab, rng), group, kind))
        if progress and (group + 1) % 5000 == 0:
            print(f"corpus: {len(items)}/{n_docs} documents", file=sys.stderr)
    order = rng.permutation(len(items))
    width = max(6, len(str(n_docs)))
    docs = [{"doc_id": f"d{i:0{width}d}", "text": items[j][0]} for i, j in enumerate(order)]
    return Corpus(docs=docs, groups=[items[j][1] for j in order], kinds=[items[j][2] for j in order])


def generate(n_docs: int, seed: int = 0, dup_fraction: float = 0.3) -> tuple[list[dict], list[int]]:
    """Documents ``{"doc_id", "text"}`` and their ground-truth group ids (shared by a base and its variants)."""
    corpus = generate_labelled(n_docs, seed, dup_fraction)
    return corpus.docs, corpus.groups


def as_spark_df(spark: Any, docs: list[dict]) -> Any:
    """The documents as a DataFrame ``doc_id string, text string``."""
    return spark.createDataFrame([(d["doc_id"], d["text"]) for d in docs], "doc_id string, text string")


def shingles(text: str, ngram: int = NGRAM) -> set[str]:
    """Word n-grams of the lowercased text split on non-word characters; a shorter text is one shingle."""
    tokens = [t for t in SPLIT.split(text.lower()) if t]
    if len(tokens) < ngram:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def check_table(samples: int, seed: int) -> list[tuple[str, int, float, float, float]]:
    """(row, pairs, mean, min, max) true Jaccard: each kind against its base, unrelated bases, pairs within groups."""
    rng = np.random.default_rng(seed)
    vocab = Vocabulary.build()
    draws = _Draws(vocab, rng)
    bases = [_base_document(draws, rng) for _ in range(samples)]
    base_sets = [shingles(render(b)) for b in bases]
    rows = []
    for kind in KINDS:
        values = [
            jaccard(s, shingles(make_variant(kind, b, vocab, rng))) for b, s in zip(bases, base_sets, strict=True)
        ]
        rows.append((kind, len(values), float(np.mean(values)), min(values), max(values)))
    unrelated = [jaccard(base_sets[i], base_sets[(i + 1) % samples]) for i in range(samples)]
    rows.append(("unrelated", len(unrelated), float(np.mean(unrelated)), min(unrelated), max(unrelated)))
    corpus = generate_labelled(samples * 4, seed)
    members: dict[int, list[set[str]]] = {}
    for doc, group in zip(corpus.docs, corpus.groups, strict=True):
        members.setdefault(group, []).append(shingles(doc["text"]))
    within = [jaccard(a, b) for sets in members.values() for a, b in combinations(sets, 2)]
    rows.append(("any pair in a group", len(within), float(np.mean(within)), min(within), max(within)))
    return rows


def print_check(samples: int, seed: int) -> None:
    vocab = Vocabulary.build()
    lengths = [len(d["text"].split()) for d in generate(samples, seed)[0]]
    print(f"vocabulary: {vocab.size()} words; {samples} sample documents of {min(lengths)}-{max(lengths)} words")
    print(f"\n{'true 5-gram Jaccard':<22} {'pairs':>6} {'mean':>7} {'min':>7} {'max':>7}")
    for name, count, mean, low, high in check_table(samples, seed):
        print(f"{name:<22} {count:>6} {mean:>7.3f} {low:>7.3f} {high:>7.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dup-fraction", type=float, default=0.3)
    parser.add_argument("--check", action="store_true", help="print true Jaccard per variant kind and exit")
    parser.add_argument("--samples", type=int, default=300, help="base documents per row in --check")
    parser.add_argument("--out", help="write the corpus as JSON lines (doc_id, text, group, kind)")
    args = parser.parse_args(argv)
    if args.check:
        print_check(args.samples, args.seed)
        return
    corpus = generate_labelled(args.docs, args.seed, args.dup_fraction, progress=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            for doc, group, kind in zip(corpus.docs, corpus.groups, corpus.kinds, strict=True):
                handle.write(json.dumps({**doc, "group": group, "kind": kind}) + "\n")
    print(f"{len(corpus.docs)} documents in {len(set(corpus.groups))} groups" + (f" → {args.out}" if args.out else ""))


if __name__ == "__main__":
    main()
