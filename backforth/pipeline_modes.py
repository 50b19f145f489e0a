"""``backforth pipeline --set pipeline.models=finetuned``: fine-tune first, then generate with the registered models.

``conf/pipeline.yaml`` names the modes. ``zero-shot`` (default) leaves the pipeline as it is; another mode prepends
its ``steps_before`` (unless ``--steps`` was given) and routes its ``overrides`` (``<job>.<key>: value``) to the steps,
ahead of the user's own ``--set`` values, which win.
"""

from __future__ import annotations

from pathlib import Path

from backforth.config import ConfigError, default_conf_dir, parse_override, read_yaml

DEFAULT = "zero-shot"


def apply_mode(
    overrides: list[str], steps: list[str] | None, default_steps: list[str], conf_dir: Path | None
) -> tuple[list[str], list[str] | None, str]:
    """(overrides without ``pipeline.*`` keys plus the mode's own, steps, mode name)."""
    own = [o for o in overrides if parse_override(o)[0].partition(".")[0] == "pipeline"]
    rest = [o for o in overrides if o not in own]
    path = (Path(conf_dir) if conf_dir else default_conf_dir()) / "pipeline.yaml"
    conf = read_yaml(path) if path.is_file() else {}
    mode = conf.get("models", DEFAULT)
    for text in own:
        key, value = parse_override(text)
        if key != "pipeline.models":
            raise ConfigError(f"--set {text}: the only pipeline key is pipeline.models ({DEFAULT} or a mode of {path})")
        mode = value
    if mode == DEFAULT:
        return rest, steps, mode
    modes = conf.get("modes") or {}
    if mode not in modes:
        raise ConfigError(f"pipeline.models: {mode!r} is not {DEFAULT} or a mode of {path} ({', '.join(modes)})")
    spec = modes[mode] or {}
    extra = [f"{key}={value}" for key, value in (spec.get("overrides") or {}).items()]
    if steps is None:
        before = list(spec.get("steps_before") or [])  # moved ahead of the others, in their order (seed, finetune)
        steps = before + [s for s in default_steps if s not in before]
    return extra + rest, steps, mode
