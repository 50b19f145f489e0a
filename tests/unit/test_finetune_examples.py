"""Fine-tuning examples without training: prompt masking, formats, length skips, batching; models:/ URIs."""

from __future__ import annotations

import pytest

from backforth.finetune import (
    PLAIN_TEMPLATE,
    TrainSettings,
    batches,
    build_examples,
    encode_example,
    messages_for,
    plan_steps,
)
from backforth.registered_models import parse_uri
from backforth.udfs.prompts import load_prompt

PAIR = {"instruction": "How do tides work?", "response": "The moon's gravity pulls the oceans into two bulges."}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from backforth.models import EMBEDDED, resolve_tokenizer

    return AutoTokenizer.from_pretrained(resolve_tokenizer(EMBEDDED))


def test_backward_examples_use_the_backtranslate_prompt_and_learn_only_the_instruction(tokenizer):
    template = load_prompt("backtranslate")
    messages, target = messages_for(PAIR, "backward", template)
    assert PAIR["response"] in messages[-1]["content"] and target == PAIR["instruction"]
    example, reason = encode_example(tokenizer, messages, target, 2048)
    assert reason == ""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n_prompt = len(tokenizer.encode(prompt, add_special_tokens=False))
    assert example.labels[:n_prompt] == [-100] * n_prompt  # no loss on the prompt ...
    learned = [t for t in example.labels if t != -100]
    assert tokenizer.decode(learned) == PAIR["instruction"] + "<|im_end|>"  # ... only the target and its end
    assert learned[-1] == tokenizer.eos_token_id
    assert example.input_ids[:n_prompt] == tokenizer.encode(prompt, add_special_tokens=False)  # as engines encode


def test_forward_and_plain_format_and_length_skips(tokenizer):
    messages, target = messages_for(PAIR, "forward", None)
    assert messages == [{"role": "user", "content": PAIR["instruction"]}] and target == PAIR["response"]
    tokenizer.chat_template, saved = PLAIN_TEMPLATE, tokenizer.chat_template
    try:
        example, _ = encode_example(tokenizer, messages, target, 2048)
        text = tokenizer.decode(example.input_ids)
        assert text.startswith("### Input:\nHow do tides work?\n\n### Output:\n") and text.endswith("<|im_end|>")
    finally:
        tokenizer.chat_template = saved
    examples, skipped = build_examples([PAIR, {**PAIR, "response": "word " * 400}], "forward", tokenizer, None, 128)
    assert len(examples) == 1 and skipped == {"too_long": 1}


def test_batches_are_seeded_epochs_and_steps_follow_epochs_or_the_cap():
    items = list(range(10))
    first, again = batches(items, 3, 4, seed=1), batches(items, 3, 4, seed=1)
    assert first == again and [len(b) for b in first] == [4, 4, 4]
    assert sorted(first[0] + first[1] + first[2][:2]) == items  # the first epoch covers every example once
    assert plan_steps(100, TrainSettings(batch_size=32, epochs=2.0)) == 7
    assert plan_steps(100, TrainSettings(batch_size=32, epochs=2.0, max_steps=3)) == 3


def test_models_uris():
    assert parse_uri("models:/backforth-backward@candidate") == ("backforth-backward", None, "candidate")
    assert parse_uri("models:/main.backforth.bw/12") == ("main.backforth.bw", "12", None)
    for bad in ("models:/x", "models:/x/latest", "runs:/abc/model"):
        with pytest.raises(ValueError, match="expected models"):
            parse_uri(bad)


def test_pipeline_models_mode_prepends_seed_and_finetune_and_routes_the_registered_profiles():
    from backforth.config import ConfigError
    from backforth.jobs import PIPELINE as STEPS
    from backforth.pipeline_modes import apply_mode

    user = ["backtranslate.limit=5", "score.model=my-judge"]
    assert apply_mode(user, None, STEPS, None) == (user, None, "zero-shot")  # the default leaves everything as is
    overrides, steps, mode = apply_mode(["pipeline.models=finetuned", *user], None, STEPS, None)
    assert "seed" in STEPS  # the pipeline mixes seed pairs into the training set; the mode moves seed ahead
    assert mode == "finetuned" and steps == ["seed", "finetune", *[s for s in STEPS if s != "seed"]]
    assert overrides == ["backtranslate.model=backward-cpu", "score.model=forward-cpu", *user]  # the user's win
    assert apply_mode(["pipeline.models=finetuned"], ["score"], STEPS, None)[1] == ["score"]  # --steps is kept
    with pytest.raises(ConfigError, match="not zero-shot or a mode"):
        apply_mode(["pipeline.models=tuned"], None, STEPS, None)
    with pytest.raises(ConfigError, match="only pipeline key"):
        apply_mode(["pipeline.steps=x"], None, STEPS, None)
