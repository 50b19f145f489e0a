"""Masking secrets wherever a config, a URL or a message is printed, logged or stored.

A key (a config key, the dotted path to a value, a Spark or Hadoop conf key) names a secret by its words; a URL or a
connection string carries one in its userinfo or in a named parameter. See :func:`is_secret_key` and
:func:`mask_url_secrets`; :func:`redact` applies both to a whole config.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# A key is a secret when one of its words (split at punctuation and camelCase) is one of these...
SECRET_PARTS = {"password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "apikey", "credential",
                "credentials", "pat", "sas", "signature", "authorization"}  # fmt: skip
# ... or when "key" follows one of these: fs.azure.account.key.<account>, fs.s3a.secret.key, fs.s3a.access.key
# (an access key id names a credential, and Spark redacts it too), private_key, api.key. A bare key (a table's
# `key`, `seed_key`, a list of keys) is not a secret.
KEY_KINDS = {"account", "secret", "access", "private", "api", "master", "shared", "signing", "encryption", "sas"}
# ... unless the next word says which facet of the key a setting is about: spark.io.encryption.keySizeBits
KEY_FACETS = {"size", "bits", "length", "len", "provider", "providers", "type", "algorithm", "store", "alias", "format"}
# words glued without a separator that still say "secret": dbpassword, hfaccesstoken, x-api-key's apikey
SECRET_WORDS = ("password", "passwd", "secret", "credential", "apikey", "accesstoken", "accesskey", "accountkey",
                "secretkey", "privatekey", "authtoken", "sastoken", "sessiontoken", "refreshtoken",
                "bearertoken")  # fmt: skip
# "token" next to one of these counts tokens: max_tokens, token_budget, max_token_len are numbers, not secrets
COUNT_PARTS = {"max", "min", "num", "count", "limit", "budget", "len", "length", "size", "per", "total", "tokens"}
# a key ending in one of these names where or what kind a credential is, not the credential:
# fs.s3a.aws.credentials.provider (a class), hadoop.security.credential.provider.path, token_type
NOT_A_VALUE = {"provider", "providers", "type", "path", "file", "enabled", "scope"}
# parameters of a URL's query or of a connection string that carry a credential, besides secret-looking names:
# Google's ?key=, Azure SAS's sig=, AWS's X-Amz-Signature
URL_SECRET_PARAMS = {"key", "sig", "sign", "signature", "auth", "pass"}


def key_parts(key: str) -> list[str]:
    """``spark.hadoop.fs.azure.account.key.acct`` and ``AWSAccessKeyId`` → their lower-case words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key))
    return [p for p in re.split(r"[^a-z0-9]+", spaced.lower()) if p]


def is_secret_key(key: str) -> bool:
    """Whether the value of ``key`` (a config key, a dotted path, a Spark or Hadoop conf key) is a credential:
    ``access_token``, ``db_password``, ``api_key``, ``fs.azure.account.key.<account>.dfs.core.windows.net``,
    ``fs.s3a.secret.key``, ``fs.s3a.session.token`` are; ``max_tokens`` (a count), ``tokenizer``, ``seed_key``,
    ``spark.sql.shuffle.partitions``, ``fs.s3a.aws.credentials.provider`` (a class name) are not."""
    parts = key_parts(key)
    if not parts or parts[-1] in NOT_A_VALUE:
        return False
    glued = any(word in part for part in parts for word in SECRET_WORDS)
    if "token" in parts and COUNT_PARTS.intersection(parts) and not glued:
        return False  # max_token_len, token_budget
    if glued or SECRET_PARTS.intersection(parts):
        return True
    for before, word, after in zip(["", *parts[:-1]], parts, [*parts[1:], ""], strict=True):
        if word in ("key", "keys") and before in KEY_KINDS and after not in KEY_FACETS:
            return True
    return False


def redact(data: Any, key: str = "") -> Any:
    """Mask values whose key (the dotted path to them: a value below ``secrets:`` is one too) looks like a secret,
    and credentials inside URLs and connection strings, so configs can go to logs and MLflow."""
    if isinstance(data, dict):
        return {k: redact(v, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v, key) for v in data]
    if data is not None and is_secret_key(key):
        return MASK
    if isinstance(data, str):
        return mask_url_secrets(data)
    return data


# scheme://user:password@host: the password (up to the last @ before the path)
URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#]*@")
# name=value after the start, ;, &, ?, / or a space: sc://host/;token=…, ?sig=…, AccountKey=…;, password='…'
URL_PARAM = re.compile(r"(?i)((?:^|[;&?/\s])[\w.-]+\s*=\s*)('[^']*'|\"[^\"]*\"|[^;&\s]+)")


def mask_url_secrets(text: str) -> str:
    """Credentials inside URLs and connection strings, masked: the password of ``http://user:pass@host``, and the
    parameters that carry one (``sc://host:443/;token=dapi…;x-cluster-id=1`` → ``…;token=***;x-cluster-id=1``,
    Azure's ``AccountKey=…`` and SAS ``sig=…``, JDBC's ``password=…``)."""

    def param(match: re.Match) -> str:
        name = match.group(1).rstrip().rstrip("=").strip().lstrip(";&?/")
        secret = is_secret_key(name) or name.lower() in URL_SECRET_PARAMS
        return match.group(1) + MASK if secret and match.group(2) != MASK else match.group(0)

    return URL_PARAM.sub(param, URL_USERINFO.sub(rf"\1{MASK}@", text))


def split_userinfo(uri: str) -> tuple[str, str | None, str | None]:
    """``https://user:pass@host:5000/x`` → (``https://host:5000/x``, ``user``, ``pass``), percent-decoded; a URI
    without credentials comes back as it is, with (None, None)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri, None, None
    if "@" not in parts.netloc:
        return uri, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None, unquote(password) or None
