"""Shared fixtures: one local Spark + Delta session per test run, a fresh schema per test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from backforth.config import Settings, TablesConfig


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's data folder: metastore, warehouse and MLflow store of the test run."""
    return tmp_path_factory.mktemp("backforth-data")


@pytest.fixture(scope="session")
def spark(data_dir: Path):
    """One Delta-enabled local session for the whole run (starting Spark costs ~10 s)."""
    from backforth.spark import build_local_session

    session = build_local_session(Settings(data_dir=str(data_dir)))
    yield session
    session.stop()


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_settings(data_dir: Path):
    """Settings in a schema of their own, so tests never see each other's tables."""
    schema = new_schema()
    return lambda job_cfg=None: Settings(data_dir=str(data_dir), tables=TablesConfig(schema=schema), job=job_cfg)


@pytest.fixture(scope="session")
def new_settings(data_dir: Path):
    """``new_settings(job_cfg)``: settings in a new schema on every call, for fixtures shared by several tests."""
    return lambda job_cfg=None: Settings(data_dir=str(data_dir), tables=TablesConfig(schema=new_schema()), job=job_cfg)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with the embedded model's real tokenizer (no download)."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from backforth.models import EMBEDDED, resolve_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer_dir = Path(resolve_tokenizer(EMBEDDED))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        tie_word_embeddings=True,
    )  # fmt: skip
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
