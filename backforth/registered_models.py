"""Models in the MLflow model registry: log and register a fine-tuned folder, pin ``models:/`` URIs, fetch them.

- On the driver, inside a job's run: :func:`log_and_register` logs a transformers checkpoint folder as an MLflow model
  (transformers flavor, the folder copied as it is), registers it under a name, points an alias at the new version
  and tags the version with what it was trained on (the seed table's Delta version, base model, seed, settings).
- On the driver, when a model profile names ``models:/<name>@<alias>`` or ``models:/<name>/<version>``:
  :func:`pin` resolves it to one version, so the step version, every generated row and the run's tags name the exact
  registered model, and a moved alias means new rows rather than mixed ones.
- In the Spark Python workers: :func:`local_copy` downloads that version once per machine into
  ``$BACKFORTH_CACHE/models/registry/`` (keyed by the version's unique source, so two stores that both have a
  ``backforth-backward/1`` never share a folder) and returns the checkpoint folder the engines load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from backforth import crash
from backforth.errors import BadPathError, ConfigError, MissingInputError

log = logging.getLogger("backforth.registered_models")
PREFIX = "models:/"
_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered model version, as generated rows and run tags record it."""

    name: str
    version: str
    requested: str  # what the config asked for, e.g. models:/backforth-backward@candidate
    source: str  # the version's artifact source (a logged model, models:/m-...; or a run artifact path)
    run_id: str | None
    tracking_uri: str | None  # where workers fetch it from
    registry_uri: str | None

    @property
    def uri(self) -> str:
        """The pinned URI: ``models:/<name>/<version>``."""
        return f"{PREFIX}{self.name}/{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_registry_uri(ref: str | None) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` → (name, None, alias); ``models:/name/3`` → (name, "3", None); else ValueError."""
    match = _URI.match(uri.strip())
    if not match:
        raise ConfigError(f"{uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return match["name"], match["version"], match["alias"]


def pin(uri: str, client: Any = None) -> ModelVersionRef:
    """Resolve ``uri`` against the current tracking/registry URIs to one model version (driver side)."""
    import mlflow
    from mlflow import MlflowClient

    name, version, alias = parse_uri(uri)
    client = client or MlflowClient()
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except Exception as exc:  # noqa: BLE001 - MlflowException for a missing name, alias or version
        from backforth.masking import mask_url_secrets

        where = mask_url_secrets(mlflow.get_registry_uri())
        raise MissingInputError(
            f"{uri}: not found in the model registry at {where} ({type(exc).__name__}: "
            f"{mask_url_secrets(str(exc)[:200])}); "
            "run `backforth finetune` first, or check the name and alias with `mlflow models` / the MLflow UI"
        ) from exc
    return ModelVersionRef(
        name=name,
        version=str(found.version),
        requested=uri,
        source=str(found.source),
        run_id=found.run_id,
        tracking_uri=mlflow.get_tracking_uri(),
        registry_uri=mlflow.get_registry_uri(),
    )


def cache_folder(ref: dict[str, Any]) -> Path:
    """Where a worker keeps its copy of one registered version."""
    from backforth.spark import cache_dir

    key = hashlib.sha256(f"{ref.get('registry_uri')}|{ref['name']}|{ref['version']}|{ref['source']}".encode())
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref["name"])
    return cache_dir() / "models" / "registry" / f"{safe}-v{ref['version']}-{key.hexdigest()[:12]}"


def checkpoint_in(folder: Path) -> Path:
    """The transformers checkpoint inside a downloaded model: ``model/`` (transformers flavor) or the folder itself."""
    for candidate in (folder / "model", folder):
        if (candidate / "config.json").is_file():
            return candidate
    raise BadPathError(f"{folder}: no config.json in the registered model (not a transformers checkpoint)")


def local_copy(ref: dict[str, Any]) -> str:
    """Download the pinned version ``ref`` (a :class:`ModelVersionRef` as dict) once per machine; its checkpoint."""
    folder = cache_folder(ref)
    if (folder / ".complete").is_file():
        return str(checkpoint_in(folder))
    import mlflow

    # A Spark worker knows nothing of the driver's store: point this process at it (else MLflow's default store in
    # the working directory is used, and the model is "not found").
    if ref.get("tracking_uri"):
        mlflow.set_tracking_uri(ref["tracking_uri"])
    if ref.get("registry_uri"):
        mlflow.set_registry_uri(ref["registry_uri"])
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s/%s into %s (pid %d)", ref["name"], ref["version"], folder, os.getpid())
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{PREFIX}{ref['name']}/{ref['version']}",
            dst_path=str(tmp),
            tracking_uri=ref.get("tracking_uri"),
            registry_uri=ref.get("registry_uri"),
        )
        checkpoint_in(tmp)
        (tmp / ".complete").write_text(ref["source"], encoding="utf-8")
        try:
            os.rename(tmp, folder)  # atomic: when two workers download at once, the first copy stays
        except OSError:
            if not (folder / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(checkpoint_in(folder))


# -- logging and registering (driver, inside the job's run) -------------------------------------------------------
def find_version(name: str, tag: str, value: str, client: Any = None) -> Any | None:
    """The newest version of ``name`` whose tag ``tag`` equals ``value`` (None if the name or such a version is
    missing): lets a re-run of the same training reuse the version it registered before."""
    from mlflow import MlflowClient

    client = client or MlflowClient()
    try:
        versions = list(client.search_model_versions(f"name = '{name}'"))
    except Exception:  # noqa: BLE001 - no such registered model yet
        return None
    matching = [v for v in versions if (v.tags or {}).get(tag) == value and v.status == "READY"]
    return max(matching, key=lambda v: int(v.version)) if matching else None


def set_alias(name: str, alias: str | None, version: str, client: Any = None) -> None:
    from mlflow import MlflowClient

    if alias:
        (client or MlflowClient()).set_registered_model_alias(name, alias, str(version))


def log_and_register(
    folder: Path,
    artifact_name: str,
    registered_name: str,
    alias: str | None,
    tags: dict[str, str],
    params: dict[str, Any],
    pip_requirements: list[str],
    description: str = "",
    dataset: Any = None,
    model_metrics: dict[str, float] | None = None,
) -> ModelVersionRef:
    """Log ``folder`` (a transformers checkpoint) as a model of the active run, register it, tag it, alias it.
    ``model_metrics`` are logged on the model itself, linked to ``dataset`` (an MLflow dataset: the training data at
    its Delta version), which is how MLflow 3 ties a logged model to the data it was trained on."""
    import mlflow
    from mlflow import MlflowClient

    for noisy in ("mlflow.transformers", "mlflow.models.model"):  # model-card and license lookups on the hub
        logging.getLogger(noisy).setLevel(logging.ERROR)
    info = mlflow.transformers.log_model(
        transformers_model=str(folder),
        task="text-generation",
        name=artifact_name,
        pip_requirements=pip_requirements,
        params={k: str(v)[:500] for k, v in params.items()},
        tags=tags,
    )
    crash.point("finetune.after_log_model")
    # The version is created with its tags in one registry write: a version without them (a kill between creating
    # and tagging) would be invisible to find_version, and the rerun would register a second copy of the same model.
    created = mlflow.register_model(info.model_uri, registered_name, tags={k: str(v) for k, v in tags.items()})
    version = str(created.version)
    crash.point("finetune.after_register")
    if model_metrics:
        mlflow.log_metrics(model_metrics, model_id=info.model_id, dataset=dataset)
    client = MlflowClient()
    if description:
        client.update_model_version(registered_name, version, description=description)
    set_alias(registered_name, alias, version, client)
    ref = pin(f"{PREFIX}{registered_name}/{version}", client)
    return replace(ref, requested=f"{PREFIX}{registered_name}@{alias}" if alias else ref.uri)
