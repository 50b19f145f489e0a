"""MLflow helpers used on the driver inside a job's run: prompt versions (and, later, registered models).

Prompts go to MLflow's prompt registry as ``backforth-<name>`` (on Unity Catalog's registry:
``<catalog>.<schema>.backforth_<name>``). A version is only registered when the template's content is new (its
content hash is a version tag), so re-runs reuse the version they registered before. Where the
registry is unavailable (an old server, a store without it), the template is logged as a run artifact instead and its
content tag stands in for the version: either way every generated row records which prompt produced it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from backforth.config import Settings
from backforth.prompts import PromptTemplate

log = logging.getLogger("backforth.tracking")
PREFIX = "backforth-"


@dataclass(frozen=True)
class PromptRef:
    """What a generated row records about its prompt."""

    name: str  # registry name, e.g. backforth-backtranslate
    version: str  # registry version ("3"), or the content tag where the registry was unavailable
    uri: str  # prompts:/backforth-backtranslate/3, or the artifact path
    registry: bool


def _find_version(client: object, name: str, content_hash: str) -> object | None:
    """The registered version of ``name`` whose content_hash tag matches, if any."""
    try:
        versions = list(client.search_prompt_versions(name))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - some stores do not implement the search: walk the versions instead
        versions, number = [], 1
        while True:
            try:
                found = client.get_prompt_version(name, number)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                found = None
            if found is None:
                break
            versions.append(found)
            number += 1
    for version in versions:
        if (version.tags or {}).get("content_hash") == content_hash:
            return version
    return None


def prompt_name(template: str, settings: Settings | None = None) -> str:
    """``backforth-<template>``; where the registry is Unity Catalog's (``databricks-uc``), whose prompt names are
    three-part and take no hyphens: ``<catalog>.<schema>.backforth_<template>``, beside the step's tables."""
    uc = settings is not None and (settings.mlflow.registry_uri or "").startswith("databricks-uc")
    if uc and settings.tables.catalog:
        return f"{settings.tables.catalog}.{settings.tables.schema}.backforth_{template.replace('-', '_')}"
    return PREFIX + template


def register_prompt(template: PromptTemplate, settings: Settings | None = None) -> PromptRef:
    """Register ``template`` (once per content) and link it to the active run; fall back to a run artifact."""
    import mlflow
    from mlflow import MlflowClient

    name = prompt_name(template.name, settings)
    content_hash = template.content_hash()
    try:
        client = MlflowClient()
        version = _find_version(client, name, content_hash)
        if version is None:
            version = mlflow.genai.register_prompt(
                name=name,
                template=template.chat_template(),
                commit_message=f"{template.tag}: {template.description}"[:500],
                tags={"content_hash": content_hash, "declared_version": str(template.version), "tag": template.tag},
            )
            log.info("registered prompt %s version %s", name, version.version)
        run = mlflow.active_run()
        if run is not None:
            client.link_prompt_version_to_run(run.info.run_id, version)
        return PromptRef(name, str(version.version), f"prompts:/{name}/{version.version}", True)
    except Exception as exc:  # noqa: BLE001 - the registry is optional; the artifact keeps the exact text
        log.warning("prompt registry unavailable (%s); logging %s as a run artifact", exc, template.tag)
        path = f"prompts/{template.tag}.json"
        if mlflow.active_run() is not None:
            mlflow.log_dict(asdict(template), path)
        return PromptRef(name, template.tag, path, False)
