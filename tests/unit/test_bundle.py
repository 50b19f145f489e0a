"""The Databricks bundle, checked without the Databricks CLI (not installable here): every resource parses into the
official bundle models of ``databricks-bundles`` (unknown or misspelt keys fail), every reference resolves, and
every task's parameters are a valid ``backforth`` command whose config resolves."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest
import yaml

from backforth.cli import build_parser
from backforth.config import load_settings
from backforth.engines.profiles import load_profile
from backforth.registry import get_job, load_jobs

REPO = Path(__file__).resolve().parents[2]
BUNDLE_KEYS = {"bundle", "include", "artifacts", "variables", "targets", "workspace", "resources", "permissions",
               "run_as", "sync", "presets", "experimental", "scripts"}  # fmt: skip
REF = re.compile(r"\$\{([a-z_]+)\.([A-Za-z0-9_.]+)\}")


def load_bundle() -> tuple[dict, dict[Path, dict]]:
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    files = {}
    for pattern in root["include"]:
        matched = sorted(glob.glob(str(REPO / pattern)))
        assert matched, f"include {pattern} matches no file"
        files.update({Path(p): yaml.safe_load(Path(p).read_text()) for p in matched})
    return root, files


def jobs_of(files: dict[Path, dict]) -> list[tuple[Path, str, dict]]:
    return [(path, key, job) for path, doc in files.items() for key, job in doc["resources"].get("jobs", {}).items()]


def substitute(text: str, root: dict, target: str) -> str:
    """${var.x} → its value for that target (the target's override, else the default), ${bundle.target} → target."""
    values = {k: (v.get("default") if isinstance(v, dict) else v) for k, v in root["variables"].items()}
    values.update(root["targets"][target].get("variables", {}))
    return (
        REF.sub(lambda m: str(values[m.group(2)]) if m.group(1) == "var" else m.group(0), text)
        .replace("${bundle.target}", target)
        .replace("${workspace.current_user.short_name}", "someone")
    )


def test_bundle_root_has_known_keys_targets_and_a_wheel_artifact() -> None:
    root, files = load_bundle()
    assert set(root) <= BUNDLE_KEYS and root["bundle"]["name"] == "backforth"
    assert set(root["targets"]) == {"dev", "prod"} and root["targets"]["dev"]["mode"] == "development"
    assert root["targets"]["prod"]["mode"] == "production"
    for target in root["targets"]:  # `--env ${bundle.target}` needs conf/env/<target>.yaml
        assert (REPO / "conf" / "env" / f"{target}.yaml").is_file()
    (artifact,) = root["artifacts"].values()
    assert artifact["type"] == "whl" and "dist" in artifact["build"]
    for doc in files.values():
        assert set(doc) <= BUNDLE_KEYS


def test_every_resource_parses_into_the_official_bundle_models() -> None:
    from databricks.bundles.jobs import Job
    from databricks.bundles.schemas import Schema
    from databricks.bundles.volumes import Volume

    models = {"jobs": Job, "schemas": Schema, "volumes": Volume}
    _, files = load_bundle()
    seen = 0
    for doc in files.values():
        for kind, resources in doc["resources"].items():
            assert kind in models, f"resource kind {kind} not checked here"
            for resource in resources.values():
                models[kind].from_dict(resource)  # raises on an unknown or misspelt key
                seen += 1
    assert seen >= 8


def test_every_reference_resolves() -> None:
    root, files = load_bundle()
    variables = root["variables"]
    resources: dict[str, set[str]] = {}
    for doc in files.values():
        for kind, items in doc["resources"].items():
            resources.setdefault(kind, set()).update(items)
    texts = [(REPO / "databricks.yml").read_text(), *(p.read_text() for p in files)]
    refs = [m.groups() for text in texts for m in REF.finditer(text)]
    assert refs
    for scope, rest in refs:
        if scope == "var":
            assert rest in variables, f"${{var.{rest}}} is not declared under variables"
        elif scope == "resources":
            kind, name, _ = rest.split(".", 2)
            assert name in resources.get(kind, set()), f"${{resources.{rest}}} names no resource"
        else:
            assert f"{scope}.{rest}" in {"bundle.target", "workspace.current_user.short_name"}, (scope, rest)
    for target in root["targets"].values():
        assert set(target.get("variables", {})) <= set(variables)


def test_tasks_chain_run_the_console_script_and_their_config_resolves() -> None:
    root, files = load_bundle()
    from importlib.metadata import entry_points

    scripts = {e.name for e in entry_points(group="console_scripts") if e.value.startswith("backforth.")}
    parser = build_parser()
    known_jobs = set(load_jobs())
    pipeline_steps = []
    for path, key, job in jobs_of(files):
        clusters = {c["job_cluster_key"] for c in job.get("job_clusters", [])}
        tasks = {t["task_key"] for t in job["tasks"]}
        for task in job["tasks"]:
            assert task["job_cluster_key"] in clusters, f"{key}.{task['task_key']}: unknown cluster"
            assert {d["task_key"] for d in task.get("depends_on", [])} <= tasks
            wheel = task["python_wheel_task"]
            assert wheel["package_name"] == "backforth" and wheel["entry_point"] in scripts
            wheels = [lib["whl"] for lib in task["libraries"] if "whl" in lib]
            assert [(path.parent / w).resolve() for w in wheels] == [REPO / "dist" / "*.whl"]
            for target in root["targets"]:
                args = [substitute(a, root, target) for a in wheel["parameters"]]
                parsed = parser.parse_args(args)
                assert parsed.command in known_jobs and parsed.env == target
                schema = "backforth" if target == "prod" else "backforth_dev_someone"
                assert {"tables.catalog=main", f"tables.schema={schema}"} <= set(parsed.overrides)
                spec = get_job(parsed.command)
                settings = load_settings(parsed.command, spec.config_cls, parsed.env, parsed.overrides, None)
                assert settings.tables.catalog == "main" and settings.mlflow.registry_uri == "databricks-uc"
            if key == "backforth_pipeline":
                pipeline_steps.append(task["task_key"])
    # the pipeline job runs the pipeline's steps in the pipeline's order
    from backforth.registry import pipeline_steps as order

    assert pipeline_steps == order()


def test_llm_tasks_run_on_the_gpu_cluster_whose_spark_conf_matches_the_profile() -> None:
    root, files = load_bundle()
    profile = load_profile(root["variables"]["model_profile"]["default"])
    per_executor = {"spark.executor.cores"}  # set by the node type on Databricks
    wanted = {k: v for k, v in profile.spark.items() if k not in per_executor}
    llm_steps = {"backtranslate", "score", "rewrite", "distill"}
    checked = 0
    for _, key, job in jobs_of(files):
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in job["tasks"]:
            command = task["python_wheel_task"]["parameters"][0]
            cluster = clusters[task["job_cluster_key"]]
            if command in llm_steps:
                assert wanted.items() <= cluster["spark_conf"].items(), f"{key}.{task['task_key']}"
                assert "gpu" in cluster["spark_version"] and any("vllm" in str(lib) for lib in task["libraries"])
                checked += 1
            elif command != "finetune":  # training has its own one-node GPU cluster
                assert "gpu" not in cluster["spark_version"], f"{key}.{task['task_key']} is a CPU step on GPUs"
    assert checked >= 6


@pytest.mark.parametrize("broken", ["tasks.0.python_wheel_task.entry_pont", "job_clusters.0.new_clustr"])
def test_the_model_check_catches_a_misspelt_key(broken: str) -> None:
    from databricks.bundles.jobs import Job

    _, files = load_bundle()
    job = next(j for _, k, j in jobs_of(files) if k == "backforth_pipeline")
    node = job
    *parents, leaf = broken.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[leaf] = "x"
    with pytest.raises(ValueError, match="Unexpected field"):
        Job.from_dict(job)
