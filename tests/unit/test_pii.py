"""PII redaction (udfs/pii.py): every type found, the look-alikes of technical documentation kept, Luhn, the
placeholders, the counts and the pre-checks."""

from __future__ import annotations

import pytest

from backforth.udfs import pii
from backforth.udfs.pii import PII_FIELDS, PLACEHOLDERS, TYPES, PiiConfig, luhn_ok, redact_pii
from backforth.udfs.text import CLEAN_TEXT_SCHEMA

FOUND = {
    "email": [
        "mail me at rosa.kemper@brightfield-labs.de today",
        "Reported-by: Tomas Ek <t.ek+lists@mailhost.se>",
        "<a href='mailto:ines@orchard.coop'>write</a>",
        "contact: sales@weaver-tools.co.uk.",
    ],
    "phone": [
        "call +1 415 867 5309 after nine",
        "Tel: +44 20 7946 0321",
        "office +49 (0)30 901820 12",
        "support line (415) 867-5309",
        "fax 212-867-5309, weekdays",
        "or 617.253.1000 in Cambridge",
        "phone: +14158675309",
    ],
    "ip_address": [
        "the server at 93.184.216.34 answered",
        "curl http://151.101.1.69:8080/status",
        "from 81.2.69.160, port 22",
    ],
    "credit_card": [
        "card 4111 1111 1111 1111 exp 12/27",
        "paid with 5555-5555-5555-4444",
        "amex 3782 822463 10005 on file",
        "number 6011000990139424.",
    ],
    "api_key": [
        "aws_access_key_id = AKIAZ7Q3LMXV2PRT4W9K",
        "token ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
        "SLACK=xoxb-2048-4096-AbCdEfGhIjKlMnOp",
        "key=AIzaSyD3-hG8kLm2Nq4Rs6Tu8Vw0Xy2Za4Bc6De",
        "OPENAI_API_KEY=sk-proj-Tq8Lm3Xv9Rk2Wd7Zp4Hn6Jc1",
        "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "DATABRICKS_TOKEN=dapi0123456789abcdef0123456789abcdef",
        "HF_TOKEN=hf_QwErTyUiOpAsDfGhJkLzXcVbNm1234567",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2J5dGVz",
        "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEA7c9x" * 5 + "\n-----END RSA PRIVATE KEY-----",
    ],
}

KEPT = [
    # versions, dates, times, numbers in tables
    "Python 3.11.4 and kernel 2.6.32.1; pip install numpy==1.26.4",
    "released 2023-01-15, at 12:30:45 UTC, logged 2023-01-15T12:30:45.123+05:30",
    "Date: Mon Jan 15 12:30:45 2024 +0000",
    "| 1.25 | 3.50 | 12.75 | 1024 | 4096 |",
    "the range -2147483648 to +2147483647",
    "@@ -1,3 +1,4 @@",
    "see section 27.2.5.1 and clause 30.14.1.6",
    "#### 11.3.4.3. Sega Saturn",
    "OID 1.3.6.1.4.1.2021, reverse zone 4.3.2.1.in-addr.arpa",
    # addresses that are not someone's: private, loopback, documentation, masks, one-digit first octets
    "http://127.0.0.1:8080/ and 0.0.0.0:5432 on 10.1.2.3, 172.20.0.5, 192.168.1.10",
    "docs use 192.0.2.15, 198.51.100.7 and 203.0.113.99; netmask 255.255.255.0; dns 8.8.8.8",
    "the network 207.200.5.0 is routed",
    "octets above 255: 300.1.1.1, leading zeros 010.001.002.003",
    # hashes, ids, ports
    "commit 3f2a9c1b7e4d5f60718293a4b5c6d7e8f9a0b1c2, sha256 e3b0c44298fc1c149afbf4c8996fb924",
    "uuid 123e4567-e89b-12d3-a456-426614174000 on port 8080",
    "epoch 1673784000123 and ids 4111111111111112 (bad checksum)",
    # git and URLs
    "git clone git@github.com:org/repo.git && git push ssh://git@gitlab.com/org/repo.git",
    "https://user:secret@host.internal/path and ftp://anon@mirror.net/pub",
    "clone https://alice@bitbucket.org/team/app.git",
    "`joe:password@python.org` is refused",
    # placeholders of documentation
    "write to user@example.com, admin@mail.example.org, you@corp.test, a@b.invalid, root@localhost",
    "fromaddr: my_app@domain.tld",
    "systemctl start git-maintenance@hourly.timer",
    "prompt [root@moon 44]# and user@host:~$ ls",
    "npm install lodash@4.17.21 @types/node@20.1.0",
    # key-like but not keys
    "AWS documents AKIAIOSFODNN7EXAMPLE as its sample key",
    "sk-learn-is-not-a-real-package-name-at-all",
    "the disk-based cache; task-specific tokens",
    "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
    "function ghp_count() and hf_hub_download()",
]


@pytest.mark.parametrize("kind, text", [(k, t) for k, texts in FOUND.items() for t in texts])
def test_each_type_is_found_and_replaced_by_its_placeholder(kind: str, text: str) -> None:
    out, counts = redact_pii(text)
    assert counts[kind] == 1, (out, counts)
    assert sum(counts.values()) == 1, counts
    assert PLACEHOLDERS[kind] in out


@pytest.mark.parametrize("text", KEPT)
def test_technical_look_alikes_are_kept(text: str) -> None:
    assert redact_pii(text) == (text, dict.fromkeys(TYPES, 0))


def test_exact_output_counts_and_idempotence() -> None:
    text = "Ana <ana@riverside.io>, +33 1 42 68 53 00, 93.184.216.34 and ana@riverside.io again"
    out, counts = redact_pii(text)
    assert out == "Ana <<EMAIL>>, <PHONE>, <IP_ADDRESS> and <EMAIL> again"
    assert counts == {"email": 2, "phone": 1, "ip_address": 1, "credit_card": 0, "api_key": 0}
    assert redact_pii(out) == (out, dict.fromkeys(TYPES, 0))  # placeholders hold no digit and no @


def test_types_select_what_is_redacted() -> None:
    text = "ana@riverside.io 93.184.216.34"
    assert redact_pii(text, types=["ip_address"]) == ("ana@riverside.io <IP_ADDRESS>", {"ip_address": 1})
    assert redact_pii(text, types=[]) == (text, {})
    with pytest.raises(ValueError, match="unknown PII types"):
        redact_pii(text, types=["passport"])


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111121") and not luhn_ok("79927398710")
    # a Luhn-valid run without an issuer prefix is not a card
    assert luhn_ok("1234567812345670") and redact_pii("1234567812345670")[1]["credit_card"] == 0


def test_card_groupings_must_be_regular() -> None:
    assert redact_pii("4111 1111 1111 1111")[1]["credit_card"] == 1
    assert redact_pii("4111 1111-1111 1111")[1]["credit_card"] == 0  # mixed separators
    assert redact_pii("41 11 11 11 11 11 11 11")[1]["credit_card"] == 0  # pairs: a table of numbers


def test_pre_checks_skip_the_patterns(monkeypatch) -> None:
    """A page with no '@', no digit and no key marker runs no pattern at all."""
    ran = []
    passes = tuple(
        (name, tuple(_Spy(p, name, ran) for p in patterns), valid, maybe)
        for name, patterns, valid, maybe in pii._PASSES
    )
    monkeypatch.setattr(pii, "_PASSES", passes)
    assert redact_pii("Plain prose about configuration, without numbers or addresses.")[1] == dict.fromkeys(TYPES, 0)
    assert ran == []
    redact_pii("port 8080")
    assert "email" not in ran and "api_key" not in ran and "ip_address" not in ran and "credit_card" in ran


class _Spy:
    """A compiled pattern that notes its type's name each time it runs."""

    def __init__(self, pattern, name: str, ran: list) -> None:
        self.pattern, self.name, self.ran = pattern, name, ran

    def sub(self, repl, text):
        self.ran.append(self.name)
        return self.pattern.sub(repl, text)


def test_schema_fields_and_config() -> None:
    assert [c.split()[0] for c in CLEAN_TEXT_SCHEMA.split(", ")][-len(PII_FIELDS) :] == list(PII_FIELDS)
    assert set(PLACEHOLDERS) == set(TYPES)
    assert PiiConfig().types == list(TYPES) and PiiConfig().redact and not PiiConfig().keep_original
