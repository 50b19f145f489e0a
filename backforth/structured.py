"""Structured outputs: a step's generations constrained to a format by the engine (constrained decoding).

A constraint is a mapping with exactly one of ``regex`` (a regular expression the whole output must match),
``choice`` (a list of allowed outputs) or ``json`` (a JSON schema). Engines that support it mask, at every decoding
step, the tokens that would leave the format: vLLM (in-process, GPU and CPU builds) through its structured outputs,
transformers through xgrammar's logits processor (the grammar library vLLM itself uses), an OpenAI-compatible server
through the request body (``structured_outputs`` for vLLM servers; ``response_format`` with a JSON schema for
``json``, which other servers such as Databricks serving endpoints also accept). The fake and simulated engines have
no tokens to mask: a constraint on them is refused before anything runs.

Each LLM step takes ``structured:`` in its config: null (free generation, the default), the name of one of the
step's presets (e.g. score's ``digit``), or an explicit constraint mapping. The resolved constraint is one of the
step's parameters, so it is part of the step version: constrained and free rows live side by side.

A constraint guarantees the *format*, not the content, and not that the output ends before ``max_tokens``: an
unbounded pattern that the model never completes is cut at the cap like free text (and counted as truncated).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from backforth.config import ConfigError

KINDS = ("regex", "choice", "json")
# backends that can constrain decoding; the others refuse a constraint at plan time
SUPPORTED = ("vllm", "vllm-cpu", "transformers", "openai")

Preset = Callable[[Any], dict[str, Any]]  # the step's config → a constraint


def validate(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``spec`` checked: exactly one known kind with a value of the right type; returned as a plain dict."""
    kinds = [k for k in spec if k in KINDS]
    unknown = sorted(set(spec) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; a constraint has one of {', '.join(KINDS)}")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: a constraint has exactly one of {', '.join(KINDS)}, got {len(kinds)}")
    kind = kinds[0]
    value = spec[kind]
    if kind == "regex" and not (isinstance(value, str) and value):
        raise ConfigError(f"{where}: regex must be a non-empty string")
    if kind == "choice" and not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{where}: choice must be a non-empty list of strings")
    if kind == "json" and not isinstance(value, Mapping):
        raise ConfigError(f"{where}: json must be a JSON schema (a mapping)")
    if kind == "regex":
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{where}: regex does not compile: {exc}") from None
    return {kind: value}


def resolve(step: str, setting: Any, presets: Mapping[str, Preset], cfg: Any, backend: str) -> dict[str, Any] | None:
    """The constraint a step's ``structured`` setting asks for (None: free generation); a preset name, an unknown
    name or a backend that cannot constrain decoding is a one-line config error naming the choices."""
    if setting is None or setting is False or setting == "off":
        return None
    where = f"{step}.structured"
    if isinstance(setting, str):
        if setting not in presets:
            names = ", ".join(sorted(presets)) or "none"
            raise ConfigError(f"{where}: unknown preset {setting!r} ({step}'s presets: {names}; or a mapping with "
                              f"one of {', '.join(KINDS)})")  # fmt: skip
        spec = presets[setting](cfg)
    elif isinstance(setting, Mapping):
        spec = setting
    else:
        raise ConfigError(f"{where}: expected a preset name or a mapping, got {type(setting).__name__}")
    constraint = validate(spec, where)
    if backend not in SUPPORTED:
        raise ConfigError(f"{where}: the {backend} engine cannot constrain decoding; structured outputs need one of "
                          f"{', '.join(SUPPORTED)} (or structured: null)")  # fmt: skip
    return constraint


def describe(constraint: Mapping[str, Any] | None) -> str:
    """A stable text form for step parameters, tags and logs: ``regex:...``, ``choice:[...]``, ``json:{...}``."""
    if not constraint:
        return ""
    (kind, value), *_ = constraint.items()
    return f"{kind}:{value if kind == 'regex' else json.dumps(value, sort_keys=True)}"


def openai_fields(constraint: Mapping[str, Any] | None) -> dict[str, Any]:
    """The request-body fields that ask an OpenAI-compatible server for ``constraint``: a JSON schema as the
    standard ``response_format``; regex and choice as vLLM's ``structured_outputs`` (vLLM servers only)."""
    if not constraint:
        return {}
    if "json" in constraint:
        schema = {"name": "output", "schema": constraint["json"], "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    return {"structured_outputs": dict(constraint)}


def literal(text: str) -> str:
    """``text`` as a regular expression matching exactly it (only the metacharacters escaped, which every regex
    dialect reads the same way; Python's ``re.escape`` also escapes spaces, which not every grammar compiler takes)."""
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}/-" else c for c in text)


def xgrammar_compile(compiler: Any, constraint: Mapping[str, Any]) -> Any:
    """``constraint`` compiled by an ``xgrammar.GrammarCompiler`` (choice as an alternation of literals)."""
    if "regex" in constraint:
        return compiler.compile_regex(constraint["regex"])
    if "choice" in constraint:
        return compiler.compile_regex("|".join(f"(?:{literal(c)})" for c in constraint["choice"]))
    return compiler.compile_json_schema(json.dumps(constraint["json"]))
