"""How an LLM step sizes its shards from the cluster (no Spark: a session's conf is all it reads)."""

from __future__ import annotations

from backforth.engines import ModelProfile
from backforth.shards import BATCHES_PER_TASK, ShardPlan, engine_slots


class Conf:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


class Session:
    def __init__(self, conf: dict[str, str]) -> None:
        self.conf = Conf(conf)


def session(conf: dict[str, str]) -> Session:
    return Session(conf)


GPU = ModelProfile(name="gpu", backend="vllm", max_num_seqs=256, gpus=1)
TP8 = ModelProfile(name="tp8", backend="vllm", max_num_seqs=256, gpus=8)
CPU = ModelProfile(name="cpu", backend="vllm-cpu", parallelism=1)


def test_gpu_engines_come_from_the_executors_gpus_not_their_cores() -> None:
    # standalone: 8 executors of 8 cores and one GPU each; default parallelism would be 64 (the cores)
    standalone = session({"spark.master": "spark://m:7077", "spark.cores.max": "64", "spark.executor.cores": "8",
                          "spark.executor.resource.gpu.amount": "1", "spark.default.parallelism": "64"})  # fmt: skip
    assert engine_slots(standalone, GPU) == 8
    # YARN / Kubernetes / Databricks job clusters: executor instances; two 8-GPU nodes hold two 70B engines
    nodes = session({"spark.master": "yarn", "spark.executor.instances": "2",
                     "spark.executor.resource.gpu.amount": "8"})  # fmt: skip
    assert engine_slots(nodes, TP8) == 2 and engine_slots(nodes, GPU) == 16
    # a CPU profile's own parallelism wins; without GPUs or a stated executor count, the default parallelism
    assert engine_slots(standalone, CPU) == 1
    assert engine_slots(session({"spark.master": "local[3]"}), GPU) == 3
    assert engine_slots(session({"spark.master": "spark://m:7077", "spark.default.parallelism": "6"}), GPU) == 6


def test_the_derived_shard_gives_every_engine_several_full_batches() -> None:
    plan = ShardPlan.derive(engines=8, engine_batch=256)
    assert plan.tasks == 8 and plan.rows == 8 * 256 * BATCHES_PER_TASK and plan.in_flight == 2
    assert plan.rows // plan.tasks >= 2 * 256  # each task's engine call keeps max_num_seqs in flight for long
    pinned = ShardPlan.derive(engines=8, engine_batch=256, rows=300, in_flight=1)
    assert pinned.rows == 300 and pinned.in_flight == 1  # a configured shard_rows is taken as given
    assert ShardPlan.derive(engines=0, engine_batch=0, in_flight=0) == ShardPlan(rows=BATCHES_PER_TASK, tasks=1,
                                                                                 in_flight=1)  # fmt: skip


def test_shards_overlap_only_where_the_engines_running_at_once_are_bounded() -> None:
    from types import SimpleNamespace

    from backforth.shards import shard_plan

    cfg = SimpleNamespace(shard_rows=None, shards_in_flight=2)
    laptop = session({"spark.master": "local[2]"})
    # vLLM's CPU build on a laptop: a second shard in flight would start a second engine on the same two cores
    assert shard_plan(laptop, cfg, CPU).in_flight == 1
    assert shard_plan(laptop, cfg, GPU).in_flight == 1  # a GPU engine in local mode: nothing schedules the GPU
    # the generation stage's GPU resource profile holds the extra shard's tasks until an engine is free
    assert shard_plan(laptop, cfg, GPU, bounded=True).in_flight == 2
    light = ModelProfile(name="fake", backend="fake")
    assert shard_plan(laptop, cfg, light).in_flight == 2  # engines without a model may run side by side
