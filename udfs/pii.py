"""PII redaction for the clean step: e-mail addresses, phone numbers, IP addresses, payment-card numbers and API
keys replaced by typed placeholders, in plain Python (the clean UDF calls it once per document).

Placeholders (:data:`PLACEHOLDERS`): ``<EMAIL>``, ``<PHONE>``, ``<IP_ADDRESS>``, ``<CREDIT_CARD>``, ``<API_KEY>``.
None of them holds a digit or an ``@``, so a redacted text never matches again (redaction is idempotent).

Precision matters as much as recall: the corpus is technical documentation, where version numbers, dates, hashes,
ports, git URLs and example addresses abound. What is deliberately *not* redacted:

* **e-mail**: URL userinfo (``https://user@host/``, ``ssh://git@host/``), scp-style git remotes
  (``git@github.com:org/repo.git``: an address followed by ``:`` and a path), the ``git@`` SSH login, documentation
  domains (``example.com/.org/.net``, ``*.example``, ``*.test``, ``*.invalid``, ``*.localhost``, ``localhost``), and
  anything without a dotted, alphabetic top-level domain (``user@host`` shell prompts, ``pkg@1.2.3`` versions);
* **IP addresses** (IPv4 only): an octet above 255 or with a leading zero; a run of more than four dotted numbers
  (``1.3.6.1.4.1``); loopback, private, link-local, shared, documentation, multicast and reserved ranges (``0/8``,
  ``10/8``, ``100.64/10``, ``127/8``, ``169.254/16``, ``172.16/12``, ``192.0.0/24``, ``192.0.2/24``,
  ``192.168/16``, ``198.18/15``, ``198.51.100/24``, ``203.0.113/24``, ``224/3``: masks like ``255.255.255.0``
  included); and a one-digit first octet (``1.2.3.4``, ``2.6.32.1``, ``8.8.8.8``): in documentation that is a
  version number or a well-known public resolver, not a person's address;
* **phone numbers**: never a bare digit run. Only ``+<country code>`` numbers with 8 to 15 digits in groups, and
  North American numbers written ``(415) 555-0199``, ``415-555-0199`` or ``415.555.0199`` (area code and exchange
  not starting with 0 or 1). Dates (``2023-01-15``), times, UTC offsets (``+05:30``, ``+0000``) and diff hunks
  (``@@ -1,3 +1,4 @@``) do not have those shapes;
* **credit cards**: 13 to 19 digits, alone or in groups of four (Amex/Diners: 4-6-5, 4-6-4) split by one space or
  dash each, with a known issuer prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) *and* a valid
  Luhn checksum: timestamps, ids and table numbers almost never pass all three;
* **API keys**: only well-known shapes (AWS access key ids ``AKIA``/``ASIA``, GitHub, Slack, Google, OpenAI-style
  ``sk-``, Stripe secret/restricted keys, Databricks, Hugging Face, JWTs, PEM private-key blocks); the free-form
  ones (``sk-``, ``hf_``) need upper and lower case letters and a digit, and anything holding ``EXAMPLE`` (AWS's
  documented sample keys) or a PEM block whose body is elided stays.

Every type has a cheap pre-check (a character or a literal the pattern needs), so a page without candidates costs a
few substring searches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

TYPES = ("email", "phone", "ip_address", "credit_card", "api_key")
PiiType = Literal["email", "phone", "ip_address", "credit_card", "api_key"]
PII_FIELDS = tuple(f"pii_{t}" for t in TYPES)  # per-document counts in docs_clean's stats (NULL: type not redacted)
PII_SCHEMA = ", ".join(f"{name} int" for name in PII_FIELDS)
PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip_address": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "api_key": "<API_KEY>",
}


@dataclass
class PiiConfig:
    """The clean step's ``pii`` section."""

    redact: bool = True  # replace the PII of ``types`` by placeholders before statistics and tokens
    types: list[PiiType] = field(default_factory=lambda: list(TYPES))
    # text_original keeps the raw text (with its PII) for documents where PII was found; false: NULL for those
    keep_original: bool = False


# --- e-mail ------------------------------------------------------------------------------------------------------
# Not after a character an address cannot start after ('/' marks URL userinfo, checked fully below); the domain's
# labels dotted, its last label alphabetic; not followed by more of a host name, or by ':' and a path (scp-style).
_EMAIL = re.compile(
    r"(?<![\w.%+/@-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24})(?![\w@=-]|\.[A-Za-z0-9]|:[^\s])",
    re.ASCII,
)
_DOC_DOMAINS = ("example.com", "example.org", "example.net", "localhost")
_DOC_TLDS = ("example", "test", "invalid", "localhost", "local", "internal", "tld", "xx", "address")
# systemd unit instances (git-maintenance@hourly.timer) look like addresses
_UNIT_SUFFIXES = ("service", "timer", "socket", "mount", "automount", "target", "path", "slice", "scope", "device",
                  "swap")  # fmt: skip
_LOGINS = frozenset({"git"})  # SSH logins of code hosts, not mailboxes


def _email_ok(m: re.Match) -> bool:
    local, domain = m.group(1), m.group(2).lower()
    before = m.string[max(0, m.start() - 200) : m.start()]
    token = before.rsplit(None, 1)[-1] if before and not before[-1].isspace() else ""
    if "://" in token or (token.endswith(":") and not token.lower().endswith("mailto:")):
        return False  # userinfo of a URL (https://user:pass@host, joe:password@host), not a mailbox
    if local.lower() in _LOGINS or local.endswith(".") or ".." in local:
        return False
    if domain in _DOC_DOMAINS or domain.rsplit(".", 1)[-1] in _DOC_TLDS + _UNIT_SUFFIXES:
        return False
    return not any(domain.endswith("." + d) for d in _DOC_DOMAINS)


# --- IPv4 ----------------------------------------------------------------------------------------------------------
# not inside a longer dotted run: 1.3.6.1.4.1, 30.3.1.1.*, 4.3.2.1.in-addr.arpa
_IPV4 = re.compile(r"(\d(?<![\w.]\d)\d{0,2})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?!\w|\.\S)", re.ASCII)


# Section and clause numbers look like addresses: "see section 27.2.5.1", "IEEE 802.3-2022 33.2.4.4", "errata
# 50.2.6.3", and a numbered heading "11.3.4.3. Sega Saturn"
_SECTION_BEFORE = re.compile(
    r"(?i)(?:\b(?:sections?|sect?\.|clauses?|chapters?|appendix|annex|figures?|fig\.|tables?|steps?|items?|"
    r"paragraphs?|errat(?:a|um)|see|equivalent to|versions?|releases?)"
    r"|§|\bieee\b[^\n]{0,14})\W{0,2}$"
)
_HEADING_AFTER = re.compile(r"\.(?:[ \t]|$)|[ \t]+[\"“'A-Z]", re.MULTILINE)


def _ip_ok(m: re.Match) -> bool:
    parts = m.groups()
    if any(len(p) > 1 and p[0] == "0" for p in parts):
        return False
    a, b, c, d = (int(p) for p in parts)
    if max(a, b, c, d) > 255 or a < 10 or d == 0:  # d == 0: a network, not a host
        return False
    text, start = m.string, m.start()
    line = text[text.rfind("\n", 0, start) + 1 : start]
    if _SECTION_BEFORE.search(text, max(0, start - 30), start) or (
        not line.strip("#*-( \t") and _HEADING_AFTER.match(text, m.end())
    ):
        return False
    return not (
        a in (10, 127)
        or a >= 224  # multicast, reserved, 255.x masks
        or (a == 100 and 64 <= b < 128)
        or (a == 169 and b == 254)
        or (a == 172 and 16 <= b < 32)
        or (a == 192 and (b == 168 or (b == 0 and c in (0, 2))))
        or (a == 198 and (b in (18, 19) or (b == 51 and c == 100)))
        or (a == 203 and b == 0 and c == 113)
    )


# --- phone numbers -------------------------------------------------------------------------------------------------
_SEP = r"[ .\-]"
_PHONE_INTL = re.compile(
    rf"\+(?<![\w+/=.-]\+)[1-9]\d{{0,2}}(?:{_SEP}?\(\d{{1,4}}\))?(?:{_SEP}?\d{{1,5}}){{1,6}}(?![\w+]|[.\-]\d|:\d)",
    re.ASCII,
)
_PHONE_NANP = re.compile(
    r"[(2-9](?<![\w+/=.-].)"  # the first character, then the one before it (the engine scans for the first)
    r"(?:(?<=\()[2-9]\d\d\) ?[2-9]\d\d-\d{4}|(?<=[2-9])\d\d-[2-9]\d\d-\d{4}|(?<=[2-9])\d\d\.[2-9]\d\d\.\d{4})"
    r"(?![\w]|[.\-:]\d)",
    re.ASCII,
)


_PHONE_CUE = re.compile(r"(?i)\b(?:tel|phone|call|fax|mobile|cell|sms|whatsapp|contact)")


def _phone_ok(m: re.Match) -> bool:
    if m.re is _PHONE_NANP:
        return True
    number = m.group()
    digits = sum(ch.isdigit() for ch in number)
    if number[1:].isdigit():  # unspaced: a signed integer (+2147483647) unless a phone word comes just before
        return 10 <= digits <= 15 and _PHONE_CUE.search(m.string, max(0, m.start() - 30), m.start()) is not None
    return 8 <= digits <= 15 and _IPV4.fullmatch(number[1:]) is None  # "+192.168.2.100": an address added


# --- payment cards ---------------------------------------------------------------------------------------------------
_CARD = re.compile(
    r"\d(?<![\w.,+/-]\d)(?:\d{12,18}|\d{3}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{3}([ -])\d{6}\2\d{4,5})"
    r"(?![\w]|[.,\-]\d)",
    re.ASCII,
)
# (issuer prefix, allowed lengths)
_ISSUERS = re.compile(
    r"4\d{12}(?:\d{3}){0,2}|3[47]\d{13}|5[1-5]\d{14}|2(?:2[2-9]|[3-6]\d|7[01]|720)\d{12}|6(?:011|5\d\d|4[4-9]\d)\d{12,15}"
    r"|35(?:2[89]|[3-8]\d)\d{12,15}|3(?:0[0-5]|[689]\d)\d{11,16}|62\d{14,17}"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string.

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_ok(m: re.Match) -> bool:
    digits = m.group().replace(" ", "").replace("-", "")
    return _ISSUERS.fullmatch(digits) is not None and luhn_ok(digits)


# --- API keys ---------------------------------------------------------------------------------------------------------
_KEY = re.compile(
    r"(?<![\w-])(?:"
    r"A(?:KIA|SIA)[A-Z0-9]{16}"  # AWS access key ids (long-term, temporary)
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{50,255}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,250}"  # Slack
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google
    r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,250}"  # OpenAI-style
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,250}"  # Stripe secret / restricted
    r"|dapi[0-9a-f]{32}(?:-\d+)?"  # Databricks
    r"|hf_[A-Za-z0-9]{30,250}"  # Hugging Face
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWT
    r")(?![\w-])"
    r"|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[A-Za-z0-9+/=\s:,\-]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    re.ASCII,
)
_KEY_MARKERS = ("AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "_pat_", "xox", "AIza", "sk-", "k_live_",
                "k_test_", "dapi", "hf_", "eyJ", "PRIVATE KEY")  # fmt: skip
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=]{64}")


def _mixed(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token)


def _key_ok(m: re.Match) -> bool:
    key = m.group()
    if key.startswith("-----"):
        return _PEM_BODY.search(key) is not None  # a real body, not "..." or "<your key>"
    if "EXAMPLE" in key:
        return False
    if key.startswith(("sk-", "hf_")):
        return _mixed(key)
    return True


# --- the redactor --------------------------------------------------------------------------------------------------
def _has_digit(text: str) -> bool:
    return any(d in text for d in "0123456789")


# (type, patterns, validator, pre-check); applied in this order: keys first (they may hold digit runs), then
# addresses, then cards before phones (a card's groups are not a phone's), IPs last
_PASSES = (
    ("api_key", (_KEY,), _key_ok, lambda t: any(k in t for k in _KEY_MARKERS)),
    ("email", (_EMAIL,), _email_ok, lambda t: "@" in t),
    ("credit_card", (_CARD,), _card_ok, _has_digit),
    ("phone", (_PHONE_INTL, _PHONE_NANP), _phone_ok, lambda t: ("+" in t or "-" in t or "." in t) and _has_digit(t)),
    ("ip_address", (_IPV4,), _ip_ok, lambda t: "." in t and _has_digit(t)),
)


def redact_pii(text: str, types: tuple[str, ...] | list[str] | frozenset[str] = TYPES) -> tuple[str, dict[str, int]]:
    """``text`` with the PII of ``types`` replaced by :data:`PLACEHOLDERS`, and how many of each were replaced
    (every type of ``types`` present in the dict, 0 when none).

    >>> text, counts = redact_pii("Mail ana.diaz@corp-mail.de or call +49 30 1234567, not git@github.com:o/r.git")
    >>> text
    'Mail <EMAIL> or call <PHONE>, not git@github.com:o/r.git'
    >>> counts
    {'email': 1, 'phone': 1, 'ip_address': 0, 'credit_card': 0, 'api_key': 0}
    >>> redact_pii("v1.2.3.4 on 127.0.0.1:8080, 2023-01-15", types=["ip_address", "phone"])[1]
    {'phone': 0, 'ip_address': 0}
    """
    unknown = set(types) - set(TYPES)
    if unknown:
        raise ValueError(f"unknown PII types {sorted(unknown)}; known: {', '.join(TYPES)}")
    counts = dict.fromkeys((t for t in TYPES if t in types), 0)
    for name, patterns, valid, maybe in _PASSES:
        if name not in types:
            continue
        found = 0
        if maybe(text):
            placeholder = PLACEHOLDERS[name]
            for pattern in patterns:

                def swap(m: re.Match, valid=valid, placeholder=placeholder) -> str:
                    nonlocal found
                    if valid(m):
                        found += 1
                        return placeholder
                    return m.group()

                text = pattern.sub(swap, text)
        counts[name] = found
    return text, counts
