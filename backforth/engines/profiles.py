"""Model profiles: ``conf/models/<name>.yaml`` → :class:`ModelProfile`, with per-job overrides.

A profile's ``model`` may name a registered model, ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
Loading such a profile (on the driver, where the job's MLflow store is set) pins it to one version: ``model``
becomes ``models:/<name>/<version>`` — so the step version changes when the alias moves — and the version's
details go to ``options.registered_model``, which the engines use to fetch it and the LLM steps record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from backforth.config import ConfigError, build, conf_folder, merge_layer, read_yaml
from backforth.engines.base import ModelProfile
from backforth.errors import MissingInputError
from backforth.models import REGISTERED_OPTION
from backforth.registered_models import is_registry_uri


def profile_dir(conf_dir: Path | None = None) -> Path:
    return conf_folder(conf_dir) / "models"


def known_profiles(conf_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in profile_dir(conf_dir).glob("*.yaml"))


def load_profile(
    name: str, overrides: Mapping[str, Any] | None = None, conf_dir: Path | None = None, pin: bool = True
) -> ModelProfile:
    """Read profile ``name`` and apply ``overrides`` (a job's ``model_options``); unknown keys fail, naming the file.
    ``pin=False`` leaves a ``models:/`` reference unresolved (a check before any MLflow store is set up)."""
    path = profile_dir(conf_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(known_profiles(conf_dir)) or "none"
        raise ConfigError(f"model profile '{name}': no {path} (known profiles: {known})")
    raw: dict[str, Any] = {"name": name}
    origin: dict[str, str] = {"name": str(path)}
    merge_layer(raw, read_yaml(path), origin, str(path))
    if overrides:
        merge_layer(raw, dict(overrides), origin, "job.model_options")
    profile = build(ModelProfile, raw, origin, "")
    if pin and is_registry_uri(profile.model):
        return pin_registered(profile, origin.get("model", str(path)))
    return profile


def pin_registered(profile: ModelProfile, where: str = "") -> ModelProfile:
    """``profile`` with its ``models:/`` reference resolved to one registered version (see the module docstring)."""
    from backforth.registered_models import pin

    try:
        ref = pin(profile.model)
    except (MissingInputError, ValueError) as exc:  # not in the registry; not a models:/ reference
        raise ConfigError(f"{where}: model profile '{profile.name}': {exc}") from exc
    options = {**profile.options, REGISTERED_OPTION: ref.as_dict()}
    return replace(profile, model=ref.uri, options=options)
