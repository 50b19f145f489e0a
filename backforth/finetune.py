"""Supervised fine-tuning of the backward and forward models: a plain torch loop over transformers causal LMs.

- **Examples.** A pair becomes chat messages (``backward``: the response as the input, the instruction as the target;
  ``forward``: the reverse) rendered with the tokenizer's chat template, exactly as the engines render prompts at
  generation time (the template with the generation prompt, then the target and the template's end-of-turn text).
  ``prompt_format: plain`` installs a plain-text template instead (``### Input:`` / ``### Output:``, for base models
  without one) and saves it with the model, so the engines render the same text the model was trained on.
- **Loss on output tokens only**: prompt positions are labelled -100; the loss of an optimizer step is the mean over
  every target token of its ``batch_size`` examples (micro-batches accumulate gradients).
- **Examples longer than ``max_length``** are left out and counted (``skipped.too_long``), never truncated: a cut
  target would teach the model to stop mid-sentence, a cut prompt to answer a text it never saw.
- AdamW without decay on biases and norms, linear warm-up then linear decay to ``final_lr_ratio`` × lr, gradient
  clipping, dropout set on every dropout field the model's config has, seeds fixed (Python, NumPy, torch).
- Single device (CPU, or one GPU with ``autocast: bfloat16`` over float32 weights). Full fine-tuning with AdamW takes
  about 16 bytes per parameter, so one 80 GB GPU holds models up to about 3B parameters; the papers' 7B and 70B runs
  need sharded training (FSDP / DeepSpeed), which this loop does not do.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from backforth import hashing
from backforth.errors import UserError

log = logging.getLogger("backforth.finetune")

Direction = Literal["backward", "forward"]
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "activation_dropout")  # fmt: skip
# The plain format, as a chat template so that training and the engines render identically.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Input:\n{{ m['content'] }}\n\n"
    "{% else %}### Output:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Output:\n{% endif %}"
)


@dataclass
class TrainSettings:
    """One training preset (``conf/jobs/finetune.yaml`` holds ``cpu`` and ``paper``)."""

    base_model: str = "embedded"  # a model folder, a hub id, `embedded` (SmolLM2-135M-Instruct) or models:/...
    prompt_format: Literal["chat", "plain"] = "chat"  # chat: the tokenizer's template; plain: ### Input/Output
    learning_rate: float = 1e-5
    final_lr_ratio: float = 0.9  # linear decay to this share of the learning rate at the last step
    warmup_steps: int = 0
    batch_size: int = 32  # examples per optimizer step
    micro_batch_size: int = 4  # examples per forward pass (gradient accumulation = batch_size / micro_batch_size)
    weight_decay: float = 0.1
    dropout: float = 0.1
    max_grad_norm: float = 1.0
    epochs: float = 2.0
    max_steps: int | None = None  # cap on optimizer steps (null: epochs decide)
    max_length: int = 2048  # prompt + target tokens; longer examples are skipped and counted
    seed: int = 42
    dtype: Literal["float32", "bfloat16"] = "float32"  # weights (and optimizer state) while training
    autocast: Literal["none", "bfloat16"] = "none"  # mixed precision on GPU: bfloat16 compute, float32 weights
    gradient_checkpointing: bool = False
    threads: int | None = None  # torch CPU threads; null = torch's default
    device: str = "auto"  # auto = cuda when available, else cpu


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # -100 on prompt positions

    @property
    def target_tokens(self) -> int:
        return sum(1 for x in self.labels if x != -100)


@dataclass
class TrainResult:
    steps: int = 0
    examples: int = 0  # training examples after skips
    examples_seen: int = 0  # examples processed (with repeats over epochs)
    target_tokens: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)
    dropout_fields: list[str] = field(default_factory=list)
    device: str = "cpu"

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def messages_for(pair: dict[str, str], direction: Direction, template: Any | None) -> tuple[list[dict], str]:
    """(prompt messages, target text) of one pair. ``template``: a udfs.prompts.PromptTemplate whose single slot gets
    the input text (the backtranslate prompt for the backward model), or None for a bare user message."""
    source, target = (
        (pair["response"], pair["instruction"]) if direction == "backward" else (pair["instruction"], pair["response"])
    )
    if template is None:
        return [{"role": "user", "content": source}], target
    (slot,) = template.variables
    return template.render(**{slot: source}), target


def encode_example(
    tokenizer: Any, messages: list[dict], target: str, max_length: int, prefill: str = ""
) -> tuple[Example | None, str]:
    """Token ids and labels of one example, or (None, reason). The prompt (with the prompt template's assistant
    prefill, as the engines render it) is encoded alone, as the engines do; the loss covers the rest."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefill
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": prefill + target}], add_generation_prompt=False, tokenize=False
    )
    if not full.startswith(prompt):
        return None, "template_mismatch"  # a template that renders the assistant turn unlike its generation prompt
    answer = full[len(prompt) :].rstrip("\n")  # the target plus the template's end-of-turn marker
    prompt_ids = list(tokenizer.encode(prompt, add_special_tokens=False))
    answer_ids = list(tokenizer.encode(answer, add_special_tokens=False))
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in answer_ids:
        answer_ids.append(eos)  # the model must learn to stop
    if len(prompt_ids) + len(answer_ids) > max_length:
        return None, "too_long"
    return Example(prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids), ""


def build_examples(
    pairs: list[dict[str, str]], direction: Direction, tokenizer: Any, template: Any | None, max_length: int
) -> tuple[list[Example], Counter]:
    examples, skipped = [], Counter()
    for pair in pairs:
        messages, target = messages_for(pair, direction, template)
        prefill = template.prefill if template is not None else ""
        example, reason = encode_example(tokenizer, messages, target, max_length, prefill)
        if example is None:
            skipped[reason] += 1
        else:
            examples.append(example)
    return examples, skipped


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_for_training(path: str, settings: TrainSettings) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, dropout fields set) with the preset's dropout and prompt format applied."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if settings.prompt_format == "plain" or not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(path)
    applied = [f for f in DROPOUT_FIELDS if isinstance(getattr(config, f, None), (int, float))]
    for name in applied:
        setattr(config, name, settings.dropout)
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=getattr(torch, settings.dtype))
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tokenizer, applied


def batches(examples: list[Example], steps: int, batch_size: int, seed: int) -> list[list[Example]]:
    """``steps`` batches drawn in a seeded order: each epoch is one shuffled pass, the last epoch possibly partial."""
    rng = random.Random(seed)
    order: list[Example] = []
    while len(order) < steps * batch_size:
        epoch = list(examples)
        rng.shuffle(epoch)
        order.extend(epoch)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def collate(items: list[Example], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded (input_ids, attention_mask, labels) tensors."""
    import torch

    width = max(len(e.input_ids) for e in items)
    ids = torch.tensor([e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in items])
    mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in items])
    labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in items])
    return ids, mask, labels


def plan_steps(n_examples: int, settings: TrainSettings) -> int:
    steps = max(1, math.ceil(n_examples * settings.epochs / settings.batch_size))
    return min(steps, settings.max_steps) if settings.max_steps else steps


def train(
    model_path: str,
    pairs: list[dict[str, str]],
    direction: Direction,
    settings: TrainSettings,
    out_dir: Path,
    template: Any | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fine-tune the model at ``model_path`` on ``pairs`` in ``direction``; save model + tokenizer to ``out_dir``."""
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    set_seed(settings.seed)
    device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, dropout_fields = load_for_training(model_path, settings)
    examples, skipped = build_examples(pairs, direction, tokenizer, template, settings.max_length)
    result = TrainResult(examples=len(examples), skipped=skipped, dropout_fields=dropout_fields, device=device)
    if not examples:
        raise UserError(
            f"{direction}: no training example left of {len(pairs)} pairs (skipped: {dict(skipped)}); too_long: raise "
            "the preset's max_length, template_mismatch: use prompt_format plain"
        )
    model.to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )
    steps = plan_steps(len(examples), settings)

    def lr_factor(step: int) -> float:  # step counts from 0
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        span = max(1, steps - 1 - settings.warmup_steps)
        done = min(1.0, (step - settings.warmup_steps) / span)
        return 1.0 - done * (1.0 - settings.final_lr_ratio)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    autocast = torch.autocast(
        device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=settings.autocast != "none"
    )
    pad_id = tokenizer.pad_token_id
    started = time.perf_counter()
    for step, batch in enumerate(batches(examples, steps, settings.batch_size, settings.seed)):
        tokens = sum(e.target_tokens for e in batch)
        total = 0.0
        for start in range(0, len(batch), settings.micro_batch_size):
            ids, mask, labels = (
                t.to(device) for t in collate(batch[start : start + settings.micro_batch_size], pad_id)
            )
            with autocast:
                logits = model(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            (loss / tokens).backward()
            total += float(loss.detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        mean = total / tokens
        result.losses.append(mean)
        result.steps += 1
        result.examples_seen += len(batch)
        result.target_tokens += tokens
        elapsed = time.perf_counter() - started
        log.info("%s step %d/%d: loss %.4f, lr %.2e, %.0f s", direction, step + 1, steps, mean, lr, elapsed)
        if on_step is not None:
            on_step(step + 1, {"loss": mean, "lr": lr, "grad_norm": float(grad_norm), "target_tokens": tokens})
    result.seconds = time.perf_counter() - started
    model.eval()
    model.config.use_cache = True  # gradient checkpointing turned it off; generation wants it
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return result


VERSION = "ft-v1"  # bump when the training code changes what a given config produces


def cpu_preset() -> TrainSettings:
    """Sized for the demo: SmolLM2-135M on 2 CPU cores in a few minutes (a few steps, short examples)."""
    return TrainSettings(base_model="embedded", prompt_format="chat", learning_rate=1e-4, batch_size=8,
                         micro_batch_size=8, epochs=2.0, max_steps=10, max_length=384, device="cpu")  # fmt: skip


def paper_preset() -> TrainSettings:
    """Humpback's SFT settings (METHOD: lr 1e-5, batch 32, weight decay 0.1, dropout 0.1) on one GPU."""
    return TrainSettings(base_model="/Volumes/main/backforth/models/Llama-3.2-3B", prompt_format="plain",
                         learning_rate=1e-5, batch_size=32, epochs=2.0, max_length=2048, autocast="bfloat16",
                         gradient_checkpointing=True)  # fmt: skip


def fingerprint(direction: str, train: TrainSettings, base: str, dataset: str, prompt_tag: str, limit: Any) -> str:
    """What decides the trained weights: same fingerprint, same model (the seed is part of the settings)."""
    body = {"version": VERSION, "direction": direction, "train": asdict(train), "base": base, "data": dataset,
            "prompt": prompt_tag, "limit": limit}  # fmt: skip
    return hashing.fingerprint(body, n=16)


def resolve_base(ref: str) -> tuple[str, str]:
    """(local folder or hub id, identity for the fingerprint) of the base model; models:/ refs are pinned first."""
    from backforth.models import EMBEDDED, resolve_model
    from backforth.registered_models import is_registry_uri, local_copy, pin

    if is_registry_uri(ref):
        pinned = pin(ref)
        return local_copy(pinned.as_dict()), pinned.uri
    return resolve_model(ref), ref if ref != EMBEDDED else f"{EMBEDDED}:smollm2-135m-instruct"
