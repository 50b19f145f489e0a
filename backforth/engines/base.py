"""The engine interface: chat requests in, generations out, one engine per Spark Python worker.

An engine is built from a :class:`ModelProfile` (``conf/models/<profile>.yaml``) the first time a task in a worker asks
for it and is then kept in a module-level cache keyed by the profile, so later tasks of the same worker reuse it
(``spark.python.worker.reuse=true``, Spark's default). Only the small, picklable profile and sampling objects cross
from the driver to the executors; torch and vLLM are imported inside the engine that needs them.

Every backend renders prompts the same way (the model's chat template plus an optional assistant prefill), checks
them before generating (empty prompt, prompt too long for the model's context) and returns one :class:`Generation`
per request in request order. Per-row problems come back as ``error``; an engine failure raises, failing the task so
Spark retries it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from backforth.cache import ProcessCache

log = logging.getLogger("backforth.engines")

Backend = Literal["vllm", "vllm-cpu", "transformers", "fake", "sim", "openai"]


@dataclass
class ModelProfile:
    """How to serve one model. Loaded from ``conf/models/<name>.yaml``; ``name`` is recorded on every generated row."""

    name: str
    backend: Backend
    model: str = "embedded"  # a model folder, a hub id (clusters with hub access), or `embedded` (SmolLM2-135M)
    tokenizer: str | None = None  # default: the model's own
    max_model_len: int = 8192  # prompt + generated tokens; longer prompts are rejected per row, never truncated
    dtype: str = "auto"
    seed: int = 0  # engine seed; each request also carries its own sampling seed
    # vLLM (GPU and CPU)
    gpu_memory_utilization: float = 0.90
    tensor_parallel_size: int | None = None  # null = every GPU the Spark task owns
    enable_prefix_caching: bool = True
    max_num_seqs: int | None = None
    cpu_kvcache_gib: int = 1  # vllm-cpu: VLLM_CPU_KVCACHE_SPACE (it sizes memory from one NUMA node otherwise)
    # transformers
    batch_size: int = 8  # micro-batch of prompts per forward pass
    threads: int | None = None  # torch threads per worker on CPU; null = torch's default
    # Spark tasks per shard, i.e. engines running at once: null = the cluster's default parallelism (one per GPU
    # executor); CPU profiles use 1, one engine that owns every core.
    parallelism: int | None = None
    # GPUs one engine holds (0 = a CPU engine): on a cluster the generation stage asks Spark for this many GPUs per
    # task (stage-level scheduling), so CPU stages keep every core; vLLM's tensor parallelism defaults to it
    gpus: int = 0
    # cost accounting: the GPU type (what the throughput below was measured on), what one GPU-hour costs the user
    # (null = not priced: GPU-hours only), and the engine's throughput at full batch for `--dry-run` estimates
    gpu_type: str | None = None
    gpu_hour_usd: float | None = None
    throughput: dict[str, float] = field(default_factory=dict)  # prefill_tokens_per_s, output_tokens_per_s
    note: str = ""  # shown in the run summary and logged as a tag, e.g. what the model's output is good for
    # anything else the backend takes (vLLM engine arguments; fake-engine behaviour in tests)
    options: dict[str, Any] = field(default_factory=dict)
    # Spark settings the profile needs on a cluster (GPUs per executor and task, worker reuse, Arrow batch size).
    # Documentation for spark-submit and the Databricks bundle; a running session is never changed.
    spark: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """Cache key: two tasks with the same profile share one engine in a worker."""
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @property
    def gpus_per_engine(self) -> int:
        """GPUs one engine holds: ``gpus``, else its tensor-parallel size, else 0 (a CPU engine)."""
        return self.gpus or (self.tensor_parallel_size or 0)

    @property
    def engine_batch(self) -> int:
        """Rows an engine works on at once: vLLM's ``max_num_seqs``, else the micro-batch size."""
        return self.max_num_seqs or self.batch_size

    def identity(self) -> dict[str, Any]:
        """What decides the generated text (for step versions): not the serving knobs."""
        identity = {"name": self.name, "model": self.model, "tokenizer": self.tokenizer, "dtype": self.dtype}
        if self.backend == "openai":  # a serving endpoint: its host and served model name (never its key)
            from backforth.engines.endpoint import endpoint_host

            identity["endpoint"] = endpoint_host(str(self.options.get("base_url", "")))
        return identity


@dataclass
class Sampling:
    """Decoding parameters, recorded on every generated row."""

    temperature: float = 1.0
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int = 1234  # base seed: each row's seed derives from it and the row key
    stop: list[str] = field(default_factory=list)


@dataclass
class Request:
    """One chat prompt: messages (role/content dicts), an optional assistant prefill, an optional per-row seed, an
    optional output constraint (backforth.structured: one of regex, choice, json)."""

    messages: list[dict[str, str]]
    prefill: str = ""
    seed: int | None = None
    constraint: dict[str, Any] | None = None


@dataclass
class Generation:
    """One result. ``error`` is set (and ``text`` None) when the request could not be run."""

    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None  # stop | length | error
    probs: dict[str, float] | None = None  # next-token probabilities of the candidates (next_token_probs only)


def task_gpus() -> list[str]:
    """GPU addresses Spark assigned to the current task ([] outside a task or without GPU scheduling)."""
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - engines run inside Spark
        return []
    ctx = TaskContext.get()
    if ctx is None:
        return []
    gpu = ctx.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


class Engine:
    """Base class: prompt rendering and checks; subclasses implement :meth:`_generate` on token ids."""

    backend: str = "base"
    structured: bool = False  # whether it can constrain decoding (Request.constraint)

    def __init__(self, profile: ModelProfile) -> None:
        self.profile = profile
        self.tokenizer: Any = None

    # -- rendering ----------------------------------------------------------------------------------------------
    def render(self, request: Request) -> str:
        """The prompt text: chat template with the generation prompt, then the prefill (the start of the answer)."""
        text = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        return text + request.prefill

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def check(self, request: Request, sampling: Sampling) -> tuple[list[int] | None, Generation | None]:
        """Token ids to generate from, or a per-row error."""
        if not any((m.get("content") or "").strip() for m in request.messages if m.get("role") == "user"):
            return None, Generation(None, "empty_prompt", finish_reason="error")
        ids = self.encode(self.render(request))
        budget = self.profile.max_model_len - sampling.max_tokens
        if len(ids) > budget:
            error = (
                f"prompt_too_long: {len(ids)} prompt tokens + max_tokens {sampling.max_tokens} "
                f"> max_model_len {self.profile.max_model_len}"
            )
            return None, Generation(None, error, prompt_tokens=len(ids), finish_reason="error")
        return ids, None

    # -- generation ---------------------------------------------------------------------------------------------
    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        """Generate for every request; results in request order. Raises only if the engine itself fails."""
        if not self.structured and any(r.constraint for r in requests):
            raise ValueError(f"the {self.backend} engine cannot constrain decoding (structured outputs)")
        results: list[Generation | None] = [None] * len(requests)
        todo: list[tuple[int, list[int], Request]] = []
        for i, request in enumerate(requests):
            ids, error = self.check(request, sampling)
            if error is not None:
                results[i] = error
            else:
                todo.append((i, ids, request))
        if todo:
            outputs = self._generate([ids for _, ids, _ in todo], [r for _, _, r in todo], sampling)
            if len(outputs) != len(todo):
                raise RuntimeError(f"{self.backend} engine returned {len(outputs)} results for {len(todo)} prompts")
            for (i, _, _), out in zip(todo, outputs, strict=True):
                results[i] = out
        return [r for r in results if r is not None]

    def _generate(self, prompts: list[list[int]], requests: list[Request], sampling: Sampling) -> list[Generation]:
        raise NotImplementedError

    # -- one forward pass: probabilities of a few candidate next tokens -----------------------------------------
    def next_token_probs(self, requests: list[Request], candidates: list[str]) -> list[Generation]:
        """For each request, the probability that the next token is each candidate (a candidate that spans several
        tokens is represented by its first token). Used by the judge's logprob mode: prefill up to "Score: " and read
        the digits. Results in request order, ``probs`` set; per-row problems in ``error`` as for generate."""
        ids = {c: self.encode(c)[0] for c in candidates}
        one = Sampling(temperature=1.0, top_p=1.0, max_tokens=1)
        results: list[Generation | None] = [None] * len(requests)
        todo: list[tuple[int, list[int]]] = []
        for i, request in enumerate(requests):
            prompt, error = self.check(request, one)
            if error is not None:
                results[i] = error
            else:
                todo.append((i, prompt))
        if todo:
            probs = self._next_token_probs([p for _, p in todo], list(ids.values()))
            for (i, prompt), row in zip(todo, probs, strict=True):
                named = {c: float(row.get(token_id, 0.0)) for c, token_id in ids.items()}
                results[i] = Generation(None, None, len(prompt), 0, "probs", named)
        return [r for r in results if r is not None]

    def _next_token_probs(self, prompts: list[list[int]], token_ids: list[int]) -> list[dict[int, float]]:
        raise NotImplementedError(f"the {self.backend} engine cannot read next-token probabilities")

    def close(self) -> None:
        """Free the engine's resources (workers exit anyway; tests and benches call this)."""


# -- the per-worker cache -----------------------------------------------------------------------------------------
_ENGINES: ProcessCache[Engine] = ProcessCache("engines")


def build_engine(profile: ModelProfile) -> Engine:
    """A new engine for ``profile`` (imports only the chosen backend)."""
    if profile.backend == "fake":
        from backforth.engines.fake import FakeEngine

        return FakeEngine(profile)
    if profile.backend == "transformers":
        from backforth.engines.hf import TransformersEngine

        return TransformersEngine(profile)
    if profile.backend in ("vllm", "vllm-cpu"):
        from backforth.engines.vllm import VllmEngine

        return VllmEngine(profile)
    if profile.backend == "sim":
        from backforth.engines.sim import SimEngine

        return SimEngine(profile)
    if profile.backend == "openai":
        from backforth.engines.endpoint import EndpointEngine

        return EndpointEngine(profile)
    raise ValueError(f"unknown engine backend {profile.backend!r} (vllm, vllm-cpu, transformers, fake, sim, openai)")


def get_engine(profile: ModelProfile) -> Engine:
    """This worker's engine for ``profile``: built on first use, then reused by every later task of the worker."""

    def start() -> Engine:
        log.info("starting %s engine for %s in pid %d", profile.backend, profile.name, os.getpid())
        return build_engine(profile)

    return _ENGINES.get_or_create(profile.key(), start)
