"""Prompt templates, versioned: a ``<name>.yaml`` file (the project's own are in ``udfs/prompts/``) holds a system
message, a user message with ``{{variable}}`` slots (MLflow's prompt-registry syntax), an optional assistant prefill,
and a version number.

The content hash covers every text field, so editing a prompt changes the step version of the job that uses it even
if nobody bumps ``version``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from backforth.errors import ConfigError
from backforth.hashing import fingerprint

SLOT = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str
    prefill: str = ""
    description: str = ""

    @property
    def variables(self) -> list[str]:
        return sorted(set(SLOT.findall(self.user)))

    def content_hash(self) -> str:
        return fingerprint({k: v for k, v in asdict(self).items() if k != "description"}, 8)

    @property
    def tag(self) -> str:
        """``backtranslate-v1-1a2b3c4d``: name, declared version and content hash."""
        return f"{self.name}-v{self.version}-{self.content_hash()}"

    def render(self, **values: str | None) -> list[dict[str, str]]:
        """Chat messages with every slot filled; a missing variable is an error, ``None`` becomes empty text."""
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise KeyError(f"prompt '{self.name}' needs {', '.join(missing)}")
        user = SLOT.sub(lambda m: values[m.group(1)] or "", self.user)
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return messages + [{"role": "user", "content": user}]

    def chat_template(self) -> list[dict[str, str]]:
        """The unfilled messages (what goes to MLflow's prompt registry)."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.user})
        if self.prefill:
            messages.append({"role": "assistant", "content": self.prefill})
        return messages


def load_prompt(name: str, folder: Path) -> PromptTemplate:
    """Read ``<folder>/<name>.yaml``."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"no prompt template {path} (known: {known})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"name", "version", "system", "user", "prefill", "description"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    if data.get("name") != name:
        raise ConfigError(f"{path}: name {data.get('name')!r} does not match the file name")
    return PromptTemplate(
        name=name,
        version=int(data["version"]),
        system=(data.get("system") or "").strip(),
        user=data["user"].strip(),
        prefill=data.get("prefill") or "",
        description=(data.get("description") or "").strip(),
    )
