"""A simulated GPU engine: the fake engine's placeholder text, served at the speed of a vLLM server on one GPU.

``SimEngine`` lets a scale benchmark on CPU-only machines measure how busy the GPUs of a cluster would be. It writes
the same deterministic text as :class:`~backforth.engines.fake.FakeEngine`, but each ``generate`` call first works out
how long a continuous-batching server would need for the call and then *sleeps* that long (times ``time_scale``), so
a Spark task holds its slot for the simulated GPU time while using almost no CPU. The text is placeholder, never
training data; the token counts it reports follow the model below, not the text.

Timing model (one engine = one GPU running vLLM; all prompts of a call arrive at once):

- Every prompt becomes a request with ``round(words × tokens_per_word)`` prompt tokens (the fake tokenizer counts
  whitespace-separated words) and an output length drawn from a lognormal distribution with median
  ``output_median_tokens`` and log-standard-deviation ``output_sigma``, at least 1 and capped at
  ``sampling.max_tokens`` (``finish_reason`` "length" when the cap applies, else "stop"). The draw comes from a numpy
  ``Generator`` seeded with the request's seed (a hash of the prompt's token ids when it has none), so a row always
  gets the same length, whatever batch it lands in.
- Requests queue in order. Each scheduler iteration first continues the prefills already under way, then admits
  waiting requests while fewer than ``max_num_seqs`` sequences are running and the iteration still has prefill budget:
  at most ``max_num_batched_tokens`` prompt tokens are prefilled per iteration, so a longer prompt is chunked over
  several iterations.
- An iteration takes ``prefill_tokens / prefill_tokens_per_s + decode_step_s + decode_step_per_seq_s × decoding``,
  where ``decoding`` counts the running sequences whose prefill was already complete. Each of them emits one token
  per iteration; the iteration that completes a prompt's prefill also emits that sequence's first token (as vLLM
  does). A sequence leaves after emitting its drawn output length, freeing its slot for the next waiting request.
- The loop jumps over runs of identical decode-only iterations (nothing changes between two departures), so its
  cost grows with the number of requests, not with the number of tokens: 1,000 prompts × 512 tokens take a few
  milliseconds of CPU. Prompts are split into words as by the fake engine's tokenizer, but with CRC-32 ids (the
  fake's per-word blake2b costs about 1 s of CPU per 1,000 prompts of 400 words; this, under 0.1 s).

``next_token_probs`` (the judge's logprob mode) is timed the same way with one output token per prompt: prefill
iterations only. The engine keeps ``busy_s`` (seconds actually slept for simulated GPU work, generate and
next_token_probs calls together) and ``simulated_s`` (the same before ``time_scale``); with ``log_dir`` set, each call
appends a JSON line with both, the token counts, wall-clock start and end, and the GPU addresses Spark gave the task.

Options (``profile.options``; the profile's ``max_num_seqs`` caps running sequences, default 256):

=========================== =========== ===============================================================
option                      default     meaning
=========================== =========== ===============================================================
``prefill_tokens_per_s``    33,000      prompt tokens prefilled per second
``decode_step_s``           0.0076      fixed cost of one scheduler iteration (weights read once)
``decode_step_per_seq_s``   0.00003     extra iteration cost per decoding sequence
``max_num_batched_tokens``  8192        prompt tokens prefilled per iteration at most
``output_median_tokens``    146         median of the lognormal output length
``output_sigma``            1.46        standard deviation of log(output length)
``tokens_per_word``         1.3         model tokens per whitespace-separated word of the prompt
``time_scale``              1.0         seconds slept per simulated second (0 = do not sleep)
=========================== =========== ===============================================================

plus the fake engine's ``log_dir``, ``reply``, ``fail_after``, ``delay_s`` (an extra sleep, not counted in ``busy_s``)
and ``digit_mass``.

Calibration (Llama-3-8B-Instruct in bfloat16 on one H100 80GB SXM; no GPU was available to check it here). Source:
Lambda's published vLLM benchmark (github.com/LambdaLabsML/vllm-benchmark, ``results/prompt_{10,320,1280}/
1xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json`` and ``benchmark_v0.md``), ShareGPT prompts sent all at
once to a vLLM 0.6.0 OpenAI server on 2024-09-07; the per-request arrays (prompt and output lengths, time to first
token, inter-token latencies) allow the fits below. That server streamed tokens in blocks of 10 (multi-step
scheduling, ``--num-scheduler-steps 10``), so one inter-token gap is 10 decode iterations.

- Decode: in the 320-prompt run every prefill finished before the first decode step (the first gap of every request
  ends after the last prefill), so all 303 answered requests decoded together from then on, and the number still
  running during a 10-token block j is the number of output lengths above 1 + 10·j. A least-squares fit of
  block time / 10 against that number over 70 blocks (running sequences 220 down to 5; blocks that also contained
  a prefill left out) gives 7.63 ms + 0.0304 ms × sequences, root-mean-square residual 0.31 ms:
  ``decode_step_s`` = 0.0076 and ``decode_step_per_seq_s`` = 3.0e-5, i.e. 15.4 ms per iteration with 256 sequences
  (16,600 output tokens/s while all 256 decode). Cross-checks: the 10-prompt run streamed 10-token blocks every
  72 ms (7.2 ms per iteration with at most 10 sequences); reading the 16.1 GB of bf16 weights once at the H100's
  3.35 TB/s takes 4.8 ms, the floor under ``decode_step_s``.
- Prefill: in the same run the server prefilled 58,000 prompt tokens between the first and the last first token of
  the initial wave (0.814 s to 2.552 s) without any decode step in between: 58,000 / 1.738 s = 33,400 tokens/s
  (batches of at most 2,048 tokens, including the API server's per-request work), so ``prefill_tokens_per_s`` =
  33,000. It is below the compute ceiling: 989 TFLOP/s of dense bf16 / 16.1 GFLOP per token = 61,000 tokens/s.
- Output lengths: the 1,191 answers of the 1,280-prompt run (the server capped each at the length of ShareGPT's own
  reply) have a median of 146 tokens and a log-standard-deviation of 1.46 (p99 / median = 5.3): the defaults. Steps
  whose answers are shorter (backtranslated instructions, ~70 tokens) should set ``output_median_tokens`` through
  the job's ``model_options``.
- Check against whole runs: simulating the same answered requests (Lambda's prompt and output lengths,
  ``max_num_batched_tokens`` 2,048 as that server used) gives 9.8 s for the 320-prompt run (measured: 10.1 s from
  the first prefill to the end) and 28.4 s for the 1,280-prompt run with ``max_num_seqs`` 256, 23.8 s with 1,024
  (measured: 27.4 s; the result files do not record the setting). The 28.4 s are 8,200 output tokens/s, against
  the 8,088 of Lambda's 5,000-prompt table for vLLM 0.6.0 with 10 scheduler steps and 256 sequences. A newer
  server agrees too: vLLM V1 on an H100 served Llama-3.1-8B-Instruct the same 1,000 ShareGPT prompts (the first
  1,000 of Lambda's 1,280; 215,196 prompt tokens) with ``--ignore-eos`` in 23.29 s (vllm-project/vllm pull request
  13305, March 2025); the simulation gives 22.5 s (the 64 requests Lambda's 2,048-token server rejected get the
  mean length that makes up that run's 198,343 output tokens).
- ``tokens_per_word`` 1.3: OpenAI's rule of thumb, 100 tokens ≈ 75 English words (1 / 0.75 = 1.33; help.openai.com,
  "What are tokens and how to count them").

Limits: the per-sequence decode cost was fitted at ShareGPT lengths (contexts of a few hundred tokens); longer
contexts read more KV cache per step and would cost more. KV-cache capacity, prefix caching, CUDA-graph batch
padding, preemption and the server's 10-step blocks are not modelled; an offline ``LLM.generate`` call (what the
pipeline uses) skips the HTTP server, so real prefill may be faster than this default.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backforth.engines.base import Generation, ModelProfile, Request, Sampling, task_gpus
from backforth.engines.fake import FakeEngine, _WordTokenizer

# Calibrated to vLLM 0.6.0 serving Llama-3-8B-Instruct (bf16) on one H100 80GB SXM: see the module docstring.
DEFAULTS: dict[str, float] = {
    "prefill_tokens_per_s": 33_000.0,
    "decode_step_s": 0.0076,
    "decode_step_per_seq_s": 3.0e-5,
    "max_num_batched_tokens": 8192,
    "output_median_tokens": 146.0,
    "output_sigma": 1.46,
    "tokens_per_word": 1.3,
    "time_scale": 1.0,
}
DEFAULT_MAX_NUM_SEQS = 256

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class SimTiming:
    """The server's speed: how long one scheduler iteration takes, and how many sequences and tokens it may hold."""

    prefill_tokens_per_s: float = DEFAULTS["prefill_tokens_per_s"]
    decode_step_s: float = DEFAULTS["decode_step_s"]
    decode_step_per_seq_s: float = DEFAULTS["decode_step_per_seq_s"]
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = int(DEFAULTS["max_num_batched_tokens"])

    def __post_init__(self) -> None:
        if self.prefill_tokens_per_s <= 0 or self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError(f"sim engine: invalid timing {self}")
        if self.decode_step_s < 0 or self.decode_step_per_seq_s < 0:
            raise ValueError(f"sim engine: negative step time in {self}")


@dataclass(frozen=True)
class SimResult:
    seconds: float  # simulated GPU time of the whole call
    iterations: int  # scheduler iterations (model forward passes)
    prefill_s: float  # part of ``seconds`` spent on prompt tokens


def simulate(prompt_tokens: Sequence[int], output_tokens: Sequence[int], timing: SimTiming) -> SimResult:
    """Simulated seconds for a continuous-batching server to serve these requests, all queued at time 0.

    ``output_tokens[i]`` (≥ 1) is the number of tokens request ``i`` generates. See the module docstring for the
    model. Runs of decode-only iterations (no admission, no departure) are taken in one jump.
    """
    per_token = 1.0 / timing.prefill_tokens_per_s
    step, per_seq = timing.decode_step_s, timing.decode_step_per_seq_s
    waiting = deque(zip(prompt_tokens, output_tokens, strict=True))
    prefilling: deque[list[int]] = deque()  # admitted, prompt not fully prefilled: [tokens left, output tokens]
    last_emit: list[int] = []  # heap: for each decoding sequence, the iteration in which it emits its last token
    it = 0  # index of the next iteration
    seconds = prefill_s = 0.0
    while True:
        running = len(prefilling) + len(last_emit)
        if prefilling or (waiting and running < timing.max_num_seqs):
            budget = timing.max_num_batched_tokens
            decoding = len(last_emit)
            completed: list[int] = []  # output lengths of the sequences whose prefill completes now
            while prefilling and budget > 0:
                seq = prefilling[0]
                chunk = min(seq[0], budget)
                seq[0] -= chunk
                budget -= chunk
                if seq[0]:
                    break
                prefilling.popleft()
                completed.append(seq[1])
            while waiting and budget > 0 and running < timing.max_num_seqs:
                prompt, out = waiting.popleft()
                prompt, out = int(prompt), int(out)
                running += 1
                chunk = min(prompt, budget)
                budget -= chunk
                if chunk < prompt:
                    prefilling.append([prompt - chunk, out])
                else:
                    completed.append(out)
            tokens = timing.max_num_batched_tokens - budget
            seconds += tokens * per_token + step + per_seq * decoding
            prefill_s += tokens * per_token
            for out in completed:  # the first token comes with the prefill; the rest take one iteration each
                if out > 1:
                    heapq.heappush(last_emit, it + out - 1)
            while last_emit and last_emit[0] <= it:
                heapq.heappop(last_emit)
            it += 1
        elif last_emit:  # decode only, nothing can be admitted until the next sequence leaves
            last = last_emit[0]
            seconds += (last - it + 1) * (step + per_seq * len(last_emit))
            it = last + 1
            while last_emit and last_emit[0] <= last:
                heapq.heappop(last_emit)
        else:
            return SimResult(seconds, it, prefill_s)


class _FastWordTokenizer(_WordTokenizer):
    """The fake engine's words and chat format, with CRC-32 ids: a tenth of the CPU of hashing each word in Python."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(map(zlib.crc32, map(str.encode, text.split())))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class SimEngine(FakeEngine):
    """Fake-engine text at the pace of vLLM on one GPU: sleeps the simulated time of every call (module docstring)."""

    backend = "sim"

    def __init__(self, profile: ModelProfile) -> None:
        opts = profile.options
        self.timing = SimTiming(
            prefill_tokens_per_s=float(opts.get("prefill_tokens_per_s", DEFAULTS["prefill_tokens_per_s"])),
            decode_step_s=float(opts.get("decode_step_s", DEFAULTS["decode_step_s"])),
            decode_step_per_seq_s=float(opts.get("decode_step_per_seq_s", DEFAULTS["decode_step_per_seq_s"])),
            max_num_seqs=int(profile.max_num_seqs or DEFAULT_MAX_NUM_SEQS),
            max_num_batched_tokens=int(opts.get("max_num_batched_tokens", DEFAULTS["max_num_batched_tokens"])),
        )
        self.output_median_tokens = float(opts.get("output_median_tokens", DEFAULTS["output_median_tokens"]))
        self.output_sigma = float(opts.get("output_sigma", DEFAULTS["output_sigma"]))
        self.tokens_per_word = float(opts.get("tokens_per_word", DEFAULTS["tokens_per_word"]))
        self.time_scale = float(opts.get("time_scale", DEFAULTS["time_scale"]))
        if self.output_median_tokens <= 0 or self.output_sigma < 0 or self.tokens_per_word <= 0 or self.time_scale < 0:
            raise ValueError(f"sim engine: invalid options {opts}")
        self.busy_s = 0.0  # seconds actually slept for simulated GPU work
        self.simulated_s = 0.0  # simulated GPU seconds (busy_s ≈ simulated_s × time_scale)
        self.gpus = task_gpus()
        self._pending: dict = {}  # timing of the call in progress, merged into the fake engine's "probs" record
        # one reusable Generator; each request's draw reseeds it (a Generator per row costs ~50 µs to build)
        self._rng = np.random.Generator(np.random.PCG64(0))
        self._rng_state = self._rng.bit_generator.state
        super().__init__(profile)  # logs the construction through _log below
        self.tokenizer = _FastWordTokenizer()  # same word counts and chat format as the fake engine's

    # -- logging ------------------------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if record.get("event") == "construct":
            record = {**record, "backend": self.backend, "gpus": self.gpus, "timing": vars(self.timing) | {
                "output_median_tokens": self.output_median_tokens, "output_sigma": self.output_sigma,
                "tokens_per_word": self.tokens_per_word, "time_scale": self.time_scale}}  # fmt: skip
        elif record.get("event") == "probs" and self._pending:
            record = {**record, **self._pending}
        super()._log(record)

    # -- the model's token counts -------------------------------------------------------------------------------
    def prompt_tokens(self, ids: Sequence[int]) -> int:
        """Model tokens of a prompt the fake tokenizer split into ``len(ids)`` words."""
        return max(1, round(len(ids) * self.tokens_per_word))

    def draw_output_tokens(self, ids: Sequence[int], request: Request) -> int:
        """The request's answer length before the ``max_tokens`` cap (≥ 1): lognormal, seeded by the row."""
        if request.seed is not None:
            seed = int(request.seed) & _MASK64
        else:
            digest = hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=8).digest()
            seed = int.from_bytes(digest, "little")
        state = self._rng_state
        state["state"]["state"] = (_splitmix64(seed) << 64) | _splitmix64(seed ^ 0x5DEECE66D)
        state["has_uint32"] = 0
        self._rng.bit_generator.state = state
        draw = self._rng.lognormal(math.log(self.output_median_tokens), self.output_sigma)
        return max(1, int(round(draw)))

    # -- time -----------------------------------------------------------------------------------------------------
    def _sleep(self, simulated: float) -> float:
        """Sleep ``simulated × time_scale`` seconds; account and return the seconds actually slept."""
        planned = simulated * self.time_scale
        start = time.monotonic()
        if planned > 0:
            time.sleep(planned)
        slept = time.monotonic() - start
        self.busy_s += slept
        self.simulated_s += simulated
        return slept

    # -- generation -------------------------------------------------------------------------------------------------
    def _generate(self, prompts: list[list[int]], requests: list[Request], sampling: Sampling) -> list[Generation]:
        if self.fail_after is not None and self.generated_total() + len(prompts) > int(self.fail_after):
            raise RuntimeError(f"sim engine: simulated crash after {self.fail_after} prompts")
        start = time.time()
        if self.profile.options.get("delay_s"):
            time.sleep(float(self.profile.options["delay_s"]))
        cap = max(1, int(sampling.max_tokens))
        prompt_tokens = [self.prompt_tokens(ids) for ids in prompts]
        drawn = [self.draw_output_tokens(ids, r) for ids, r in zip(prompts, requests, strict=True)]
        output_tokens = [min(n, cap) for n in drawn]
        result = simulate(prompt_tokens, output_tokens, self.timing)
        slept = self._sleep(result.seconds)
        self.prompts += len(prompts)
        self._log({
            "event": "generate", "n": len(prompts), "lengths": [len(p) for p in prompts],
            "prompt_tokens": sum(prompt_tokens), "output_tokens": sum(output_tokens),
            "simulated_s": result.seconds, "prefill_s": result.prefill_s, "iterations": result.iterations,
            "busy_s": slept, "busy_total_s": self.busy_s, "simulated_total_s": self.simulated_s,
            "start": start, "end": time.time(), "gpus": task_gpus(),
        })  # fmt: skip
        out = []
        for ids, request, p, n, d in zip(prompts, requests, prompt_tokens, output_tokens, drawn, strict=True):
            text = self._one(ids, request, sampling).text
            out.append(Generation(text, None, p, n, "length" if d >= cap else "stop"))
        return out

    def _next_token_probs(self, prompts: list[list[int]], token_ids: list[int]) -> list[dict[int, float]]:
        start = time.time()
        prompt_tokens = [self.prompt_tokens(ids) for ids in prompts]
        result = simulate(prompt_tokens, [1] * len(prompts), self.timing)
        slept = self._sleep(result.seconds)
        self._pending = {
            "prompt_tokens": sum(prompt_tokens), "simulated_s": result.seconds, "iterations": result.iterations,
            "busy_s": slept, "busy_total_s": self.busy_s, "simulated_total_s": self.simulated_s,
            "start": start, "end": time.time(), "gpus": task_gpus(),
        }  # fmt: skip
        try:
            return super()._next_token_probs(prompts, token_ids)  # logs the "probs" record, with the timing above
        finally:
            self._pending = {}
