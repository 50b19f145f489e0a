"""Model profiles: ``conf/models/<name>.yaml`` → :class:`ModelProfile`, with per-job overrides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backforth.config import ConfigError, build, default_conf_dir, merge_layer, read_yaml
from backforth.engines.base import ModelProfile


def profile_dir(conf_dir: Path | None = None) -> Path:
    return (Path(conf_dir) if conf_dir else default_conf_dir()) / "models"


def known_profiles(conf_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in profile_dir(conf_dir).glob("*.yaml"))


def load_profile(name: str, overrides: Mapping[str, Any] | None = None, conf_dir: Path | None = None) -> ModelProfile:
    """Read profile ``name`` and apply ``overrides`` (a job's ``model_options``); unknown keys fail, naming the file."""
    path = profile_dir(conf_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(known_profiles(conf_dir)) or "none"
        raise ConfigError(f"model profile '{name}': no {path} (known profiles: {known})")
    raw: dict[str, Any] = {"name": name}
    origin: dict[str, str] = {"name": str(path)}
    merge_layer(raw, read_yaml(path), origin, str(path))
    if overrides:
        merge_layer(raw, dict(overrides), origin, "job.model_options")
    return build(ModelProfile, raw, origin, "")
