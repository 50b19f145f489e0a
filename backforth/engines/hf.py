"""transformers backend: the CPU fallback where vLLM cannot be installed (and the base for logprob and training work).

Prompts arrive sorted by length from the UDF, so each micro-batch of ``profile.batch_size`` pads little. Sampling
honours temperature, top-p, max tokens, stop strings and the seed; the seed of a micro-batch is that of its first
request (transformers draws one random stream per batch), so results depend on batch composition, unlike vLLM's
per-request seeds.

Constrained requests (``Request.constraint``) go through xgrammar, the grammar engine vLLM uses: one matcher per row
masks the tokens that would leave the format, *before* temperature and top-p are applied (transformers would run its
own top-p/top-k first and could leave a row with no allowed token), so constrained sampling matches vLLM's.
"""

from __future__ import annotations

import inspect
import os

from backforth.engines.base import Engine, Generation, ModelProfile, Request, Sampling, task_gpus
from backforth.models import resolve_profile_model, resolve_tokenizer


class TransformersEngine(Engine):
    backend = "transformers"
    structured = True

    def __init__(self, profile: ModelProfile) -> None:
        super().__init__(profile)
        gpus = task_gpus()
        if gpus:  # the GPUs Spark gave this task, set before torch initialises CUDA in this process
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if profile.threads:
            torch.set_num_threads(profile.threads)
        path = resolve_profile_model(profile)
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(profile.tokenizer) or path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # options.device: cpu | cuda | cuda:N; default: the (first visible) GPU when there is one
        self.device = profile.options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        default_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        dtype = getattr(torch, profile.dtype) if profile.dtype != "auto" else default_dtype
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **profile.options.get("load_kwargs", {}))
        self.model.to(self.device).eval()
        self.torch = torch
        # the judge needs the next token's logits only: models that support it skip the vocabulary projection of
        # every other position (a [batch, length, vocabulary] tensor otherwise)
        accepts = inspect.signature(self.model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.eos_token_id)
        self._grammars: dict[str, object] = {}  # compiled constraints by their text (a step compiles one)
        self._compiler = None

    def _generate(self, prompts: list[list[int]], requests: list[Request], sampling: Sampling) -> list[Generation]:
        out: list[Generation] = []
        size = max(1, self.profile.batch_size)
        for start in range(0, len(prompts), size):
            out.extend(self._batch(prompts[start : start + size], requests[start : start + size], sampling))
        return out

    def _left_pad(self, prompts: list[list[int]]) -> tuple:
        """(input_ids, attention_mask, width), padded on the left so every prompt ends at the last column."""
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = self.torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = self.torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        return ids, mask, width

    def _batch(self, prompts: list[list[int]], requests: list[Request], sampling: Sampling) -> list[Generation]:
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        ids, mask, width = self._left_pad(prompts)
        seed = requests[0].seed if requests[0].seed is not None else sampling.seed
        torch.manual_seed(seed)
        sample = sampling.temperature > 0
        kwargs = {"temperature": sampling.temperature, "top_p": sampling.top_p} if sample else {}
        if any(r.constraint for r in requests):  # the mask, then temperature and top-p, in one processor
            kwargs = {"logits_processor": self._constrained(requests, sampling), "top_k": 0}
            kwargs.update({"temperature": 1.0, "top_p": 1.0} if sample else {})
        if sampling.stop:
            kwargs.update(stop_strings=sampling.stop, tokenizer=self.tokenizer)
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=sample,
                max_new_tokens=sampling.max_tokens,
                pad_token_id=pad,
                **kwargs,
            )
        results = []
        for prompt, row in zip(prompts, generated[:, width:].tolist(), strict=True):
            tokens, finish = [], "length"
            for token in row:
                if token in self.eos_ids:
                    finish = "stop"
                    break
                tokens.append(token)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            for stop in sampling.stop:
                if stop in text:
                    text, finish = text.split(stop, 1)[0], "stop"
            results.append(Generation(text, None, len(prompt), len(tokens), finish))
        return results

    def _constrained(self, requests: list[Request], sampling: Sampling) -> object:
        """A processor list for one ``generate`` call: xgrammar's mask per row (rows without a constraint get one
        that allows anything), then the sampling's temperature and top-p."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper
        from xgrammar.contrib.hf import LogitsProcessor

        processors: list[object] = [LogitsProcessor([self._grammar(r.constraint) for r in requests])]
        if sampling.temperature > 0 and sampling.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.temperature > 0 and sampling.top_p < 1.0:
            processors.append(TopPLogitsWarper(sampling.top_p))
        return LogitsProcessorList(processors)

    def _grammar(self, constraint: dict | None) -> object:
        from backforth.structured import describe, xgrammar_compile

        key = describe(constraint)
        if key not in self._grammars:
            import xgrammar

            if self._compiler is None:
                vocab = self.model.get_output_embeddings().weight.shape[0]
                info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab)
                self._compiler = xgrammar.GrammarCompiler(info)
            self._grammars[key] = xgrammar_compile(self._compiler, constraint or {"regex": r"[\s\S]*"})
        return self._grammars[key]

    def _next_token_probs(self, prompts: list[list[int]], token_ids: list[int]) -> list[dict[int, float]]:
        torch = self.torch
        out: list[dict[int, float]] = []
        size = max(1, self.profile.batch_size)
        for start in range(0, len(prompts), size):
            ids, mask, _ = self._left_pad(prompts[start : start + size])
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, **self._last_only).logits[:, -1, :]
            probs = torch.softmax(logits.float(), dim=-1)[:, token_ids].tolist()
            out.extend({t: p for t, p in zip(token_ids, row, strict=True)} for row in probs)
        return out

    def close(self) -> None:
        self.model = None
