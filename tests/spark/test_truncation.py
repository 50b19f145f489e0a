"""No silent length bias: LLM steps count the outputs cut at their token cap and warn above 5 %; clean's length filter
counts with the tokenizer and context of the model profile that will read the documents."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from backforth.config import ConfigError, Settings
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.jobs.clean import CleanConfig, clean_documents, follow_generator, reader
from backforth.jobs.score import ScoreConfig
from backforth.llm import STEPS, TRUNCATION_WARN_SHARE, truncation_warning
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark
HUB_ID = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def seeded(new_settings, seed_tables) -> Settings:
    settings = new_settings()
    seed_tables(settings)
    return settings


def backtranslate(spark, settings: Settings, cap: int):
    cfg = BacktranslateConfig(model="fake", shard_rows=6, sampling=replace(BacktranslateConfig().sampling,
                                                                          max_tokens=cap))  # fmt: skip
    return run_job(get_job("backtranslate"), replace(settings, job=cfg), spark)


def test_a_step_counts_its_outputs_cut_at_the_cap_and_warns_above_five_percent(spark, seeded, caplog):
    # the fake engine writes "Could you <verb> <words>?" (4 to 11 words, a word a token): 3 tokens cut every output
    with caplog.at_level(logging.WARNING, logger="backforth.llm"):
        cut = backtranslate(spark, seeded, 3)
    version = cut.tags["backforth.step_version"]
    rows = spark.table(f"{seeded.tables.schema}.instructions").where(f"step_version = '{version}'").collect()
    assert len(rows) == 12 and all(r["finish_reason"] == "length" for r in rows)
    assert cut.metrics["truncated"] == 12 and cut.metrics["truncated_share"] == 1.0 and cut.metrics["max_tokens"] == 3
    warned = [r.getMessage() for r in caplog.records if "token cap" in r.getMessage()]
    assert warned == ["backtranslate: 12 of 12 outputs (100.0%) stopped at the 3-token cap (more than 5%): the "
                      "longest answers are cut or rejected and lengths biased short; raise it with --set "
                      "backtranslate.sampling.max_tokens=6"]  # fmt: skip
    assert cut.tags["backforth.truncation_warning"] == warned[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="backforth.llm"):
        roomy = backtranslate(spark, seeded, 64)
    assert roomy.metrics["truncated"] == 0 and roomy.metrics["truncated_share"] == 0.0
    assert not [r for r in caplog.records if "token cap" in r.getMessage()]
    assert "backforth.truncation_warning" not in roomy.tags


def test_the_warning_threshold_and_the_steps_it_applies_to() -> None:
    assert TRUNCATION_WARN_SHARE == 0.05
    assert truncation_warning("rewrite", 1, 20, 512) is None  # exactly 5 %: no warning
    assert truncation_warning("rewrite", 0, 0, 512) is None
    assert "--set rewrite.sampling.max_tokens=1024" in truncation_warning("rewrite", 2, 20, 512)
    # the judge's logprob mode reads one token by design: a cap hit means nothing there
    assert STEPS["score"].capped(ScoreConfig(mode="text")) and not STEPS["score"].capped(ScoreConfig(mode="logprob"))
    assert all(STEPS[s].capped(get_job(s).config_cls()) for s in ("backtranslate", "rewrite", "distill"))


# --- clean's length filter follows the generating model's profile
def word_tokenizer(folder):
    """A tokenizer.json that counts whitespace-separated words (one token each)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_the_default_keeps_the_local_demo_tokenizer_and_context() -> None:
    cfg = reader(CleanConfig())  # auto → the rewrite step's profile in the local env: smollm2-cpu
    assert (cfg.model, cfg.tokenizer, cfg.context_tokens) == ("smollm2-cpu", "embedded", 8192)
    assert CleanConfig().fingerprint() == CleanConfig(model="smollm2-cpu", tokenizer="embedded",
                                                      context_tokens=8192).fingerprint()  # fmt: skip
    assert CleanConfig().max_doc_tokens == 8192 - 1536
    assert reader(CleanConfig(), "cluster").model == "llama3-8b-gpu"  # the cluster env's rewrite model


def test_clean_counts_with_the_profiles_tokenizer_and_context(spark, tmp_path) -> None:
    folder = word_tokenizer(tmp_path / "words")
    cfg = CleanConfig(model="fake", model_options={"model": str(folder), "max_model_len": 1600})
    resolved = reader(cfg)
    assert resolved.tokenizer == str(folder) and resolved.context_tokens == 1600 and resolved.max_doc_tokens == 64
    assert cfg.fingerprint() != CleanConfig().fingerprint()  # another tokenizer and context: documents re-cleaned
    text = " ".join(["Granite forms slowly deep underground from cooling magma, then rises."] * 8)  # 80 words
    docs = spark.createDataFrame([("d", text)], "doc_id string, text string")
    row = clean_documents(docs, cfg).first()
    assert row["n_tokens"] == 80 and row["token_method"] == "tokenizer:words"
    assert "too_many_tokens" in row["failed_rules"]  # 80 > 1600 - 1536

    # a hub id (no local tokenizer.json): the chars/4 estimate, said so per row; the context still from the profile
    hub = CleanConfig(model="fake", model_options={"model": HUB_ID, "max_model_len": 4096})
    assert reader(hub).tokenizer is None and reader(hub).context_tokens == 4096
    row = clean_documents(docs, hub).first()
    assert row["token_method"] == "estimate_chars_div_4" and row["n_tokens"] == -(-len(text) // 4)


def test_in_a_pipeline_clean_follows_the_rewrite_model_and_a_bad_profile_fails_early(spark, make_settings):
    assert get_job("clean").plan is follow_generator
    rewrite = get_job("rewrite").config_cls(model="llama3-8b-gpu", model_options={"max_model_len": 4096})
    cfg = CleanConfig()
    follow_generator(cfg, {"backtranslate": BacktranslateConfig(model="fake"), "rewrite": rewrite})
    assert (cfg.model, reader(cfg).context_tokens, reader(cfg).tokenizer) == ("llama3-8b-gpu", 4096, None)
    named = CleanConfig(model="fake")
    follow_generator(named, {"rewrite": rewrite})
    assert named.model == "fake"  # a named profile wins

    with pytest.raises(ConfigError, match=r"^clean: job.model: model profile 'nope': no .*known profiles"):
        get_job("clean").fn(spark, make_settings(CleanConfig(model="nope")))
