"""The simulated GPU engine: continuous-batching timing, long-tailed seeded output lengths, sleeping, logging."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from backforth.engines import ModelProfile, Request, Sampling, build_engine, load_profile
from backforth.engines.sim import DEFAULTS, SimEngine, SimTiming, simulate

WORDS = "tide moon water coast pull gravity ocean shore wave basin".split()


def doc(i: int, words: int = 380) -> str:
    """A prompt of about ``words`` words (≈ 500 model tokens at 1.3 tokens per word), different for each ``i``."""
    return " ".join(f"{WORDS[(i + k) % len(WORDS)]}{(i * 7919 + k) % 997}" for k in range(words))


def requests(n: int, start: int = 0, words: int = 380) -> list[Request]:
    return [Request([{"role": "user", "content": doc(start + i, words)}], seed=start + i) for i in range(n)]


def sim(tmp_path: Path | None = None, max_num_seqs: int | None = 256, **options) -> SimEngine:
    opts = {"time_scale": 0.0, **options}
    if tmp_path is not None:
        opts["log_dir"] = str(tmp_path)
    engine = build_engine(ModelProfile(name="sim", backend="sim", model="none", max_num_seqs=max_num_seqs,
                                       max_model_len=1_000_000, options=opts))  # fmt: skip
    assert isinstance(engine, SimEngine)
    return engine


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(tmp_path.glob("engine-*.jsonl")) for line in p.read_text().splitlines()]


def test_one_large_call_is_much_faster_than_many_small_ones() -> None:
    """Batching pays: 256 prompts in one call keep 256 sequences decoding together; 8 calls of 32 do not."""
    sampling = Sampling(max_tokens=256)
    batch = requests(256)
    one = sim()
    together = one.generate(batch, sampling)
    many = sim()
    apart = [g for k in range(8) for g in many.generate(batch[32 * k : 32 * (k + 1)], sampling)]
    # same rows, same seeds, same token counts: the difference is the batching alone
    assert [(g.prompt_tokens, g.output_tokens) for g in together] == [(g.prompt_tokens, g.output_tokens) for g in apart]
    assert one.simulated_s > 0 and many.simulated_s > 2.5 * one.simulated_s


def test_output_lengths_are_seeded_long_tailed_and_capped() -> None:
    engine = sim()
    many = requests(2000, words=40)
    uncapped = engine.generate(many, Sampling(max_tokens=100_000))
    lengths = np.array([g.output_tokens for g in uncapped])
    median = np.median(lengths)
    assert 0.8 * DEFAULTS["output_median_tokens"] < median < 1.2 * DEFAULTS["output_median_tokens"]
    assert np.percentile(lengths, 99) / median > 5  # lognormal, sigma 1.46: p99/median = e^(2.33 × 1.46) ≈ 30
    assert lengths.min() >= 1 and all(g.finish_reason == "stop" for g in uncapped)
    # deterministic per seed, whatever the batch: a row alone gets what it got among 2,000, and so does a new engine
    assert [g.output_tokens for g in sim().generate(many[5:8], Sampling(max_tokens=100_000))] == list(lengths[5:8])
    other_seed = [Request(r.messages, seed=r.seed + 10_000) for r in many[:200]]
    assert [g.output_tokens for g in engine.generate(other_seed, Sampling(max_tokens=100_000))] != list(lengths[:200])
    # no seed: the prompt decides
    unseeded = [Request(r.messages) for r in many[:50]]
    assert [g.output_tokens for g in engine.generate(unseeded, Sampling())] == [
        g.output_tokens for g in sim().generate(unseeded, Sampling())
    ]
    # the cap: long draws stop at max_tokens with finish_reason "length", the others are untouched
    capped = engine.generate(many, Sampling(max_tokens=200))
    for before, after in zip(uncapped, capped, strict=True):
        if before.output_tokens >= 200:
            assert after.output_tokens == 200 and after.finish_reason == "length"
        else:
            assert after.output_tokens == before.output_tokens and after.finish_reason == "stop"
    assert sum(g.finish_reason == "length" for g in capped) > 100
    # the text is the fake engine's, prompt tokens scale with words
    fake = build_engine(ModelProfile(name="fake", backend="fake", model="none"))
    assert capped[0].text == fake.generate(many[:1], Sampling(max_tokens=200))[0].text
    assert capped[0].prompt_tokens == round(len(engine.encode(engine.render(many[0]))) * 1.3)


def test_decode_throughput_at_max_num_seqs_follows_the_calibrated_step_time() -> None:
    """Long decodes at 256 sequences: one step costs decode_step_s + 256 × decode_step_per_seq_s (15.4 ms)."""
    timing = SimTiming()
    step = DEFAULTS["decode_step_s"] + 256 * DEFAULTS["decode_step_per_seq_s"]
    assert step == pytest.approx(0.01528)
    n, prompt, out = 256, 16, 4000  # tiny prompts, long answers: the decode phase dominates
    result = simulate([prompt] * n, [out] * n, timing)
    prefill = n * prompt / DEFAULTS["prefill_tokens_per_s"] + DEFAULTS["decode_step_s"]  # one iteration admits all
    assert result.seconds == pytest.approx(prefill + (out - 1) * step, rel=1e-9)
    assert n * out / result.seconds == pytest.approx(n / step, rel=0.01)  # ≈ 16,750 output tokens/s
    assert result.iterations == out
    # fewer sequences: a cheaper step, less throughput (decode is bound by reading the weights)
    small = simulate([prompt] * 8, [out] * 8, timing)
    assert 8 * out / small.seconds == pytest.approx(8 / (DEFAULTS["decode_step_s"] + 8 * 3e-5), rel=0.01)
    # more requests than max_num_seqs queue: 512 requests take two rounds
    queued = simulate([prompt] * 512, [out] * 512, timing)
    assert queued.seconds == pytest.approx(2 * result.seconds, rel=0.01)


def test_prefill_is_chunked_by_the_token_budget() -> None:
    timing = SimTiming(max_num_batched_tokens=8192)
    # one 20,000-token prompt, one output token: three iterations of at most 8,192 prompt tokens
    result = simulate([20_000], [1], timing)
    assert result.iterations == 3
    assert result.seconds == pytest.approx(20_000 / DEFAULTS["prefill_tokens_per_s"] + 3 * DEFAULTS["decode_step_s"])
    # 64 prompts of 500 tokens with one output token each: prefill only, 32,000 tokens in 4 iterations
    judge = simulate([500] * 64, [1] * 64, timing)
    assert judge.iterations == 4 and judge.prefill_s == pytest.approx(32_000 / DEFAULTS["prefill_tokens_per_s"])


def test_the_simulation_loop_is_cheap() -> None:
    rng = np.random.default_rng(0)
    prompts = rng.integers(50, 1500, 1000).tolist()
    outputs = np.minimum(rng.lognormal(np.log(146), 1.46, 1000).astype(int) + 1, 512).tolist()
    simulate(prompts, outputs, SimTiming())  # warm up
    start = time.process_time()
    for _ in range(5):
        simulate(prompts, outputs, SimTiming())
    assert (time.process_time() - start) / 5 < 0.025


def test_busy_time_accumulates_and_calls_are_logged_with_gpus(tmp_path: Path) -> None:
    engine = sim(tmp_path, time_scale=1e-4)
    assert engine.busy_s == engine.simulated_s == 0.0
    engine.generate(requests(64), Sampling(max_tokens=128))
    first_busy, first_sim = engine.busy_s, engine.simulated_s
    assert first_sim > 0 and first_busy >= first_sim * 1e-4 * 0.9
    engine.generate(requests(64, start=64), Sampling(max_tokens=128))
    assert engine.busy_s > first_busy and engine.simulated_s > first_sim
    probs = engine.next_token_probs(requests(16, words=60), ["1", "2", "3"])
    assert all(p.probs and set(p.probs) == {"1", "2", "3"} for p in probs)
    log = events(tmp_path)
    construct = [e for e in log if e["event"] == "construct"]
    assert len(construct) == 1 and construct[0]["backend"] == "sim" and construct[0]["gpus"] == []
    assert construct[0]["timing"]["max_num_seqs"] == 256
    calls = [e for e in log if e["event"] == "generate"]
    assert [c["n"] for c in calls] == [64, 64]
    for c in calls:
        assert c["gpus"] == [] and c["busy_s"] > 0 and c["simulated_s"] > 0 and c["end"] >= c["start"]
        assert c["prompt_tokens"] > 64 * 400 and 64 <= c["output_tokens"] <= 64 * 128
    assert calls[-1]["busy_total_s"] == pytest.approx(sum(c["busy_s"] for c in calls))
    (judge,) = [e for e in log if e["event"] == "probs"]
    assert judge["n"] == 16 and judge["simulated_s"] > 0 and judge["gpus"] == []
    assert engine.busy_s == pytest.approx(sum(c["busy_s"] for c in calls) + judge["busy_s"])
    assert engine.generated_total() == 128  # the fake engine's cross-process count reads the same records


def test_time_scale_really_sleeps() -> None:
    batch = requests(32, words=40)
    dry = sim()  # time_scale 0: learn the call's simulated time without sleeping
    dry.generate(batch, Sampling(max_tokens=64))
    scale = 0.2 / dry.simulated_s  # aim at 0.2 s of real sleep
    engine = sim(time_scale=scale)
    planned = dry.simulated_s * scale
    start, cpu = time.monotonic(), time.process_time()
    engine.generate(batch, Sampling(max_tokens=64))
    elapsed = time.monotonic() - start
    assert engine.simulated_s == pytest.approx(dry.simulated_s)
    assert elapsed >= planned and engine.busy_s >= planned
    assert time.process_time() - cpu < 0.1  # it slept: almost no CPU


def test_crash_and_profile() -> None:
    engine = sim(fail_after=3)
    engine.generate(requests(2), Sampling())
    with pytest.raises(RuntimeError, match="simulated crash"):
        engine.generate(requests(2), Sampling())
    profile = load_profile("sim-h100")
    assert profile.backend == "sim" and profile.max_num_seqs == 256 and "placeholder" in profile.note
    assert {k: profile.options[k] for k in DEFAULTS} == pytest.approx(DEFAULTS)
    with pytest.raises(ValueError, match="invalid"):
        sim(prefill_tokens_per_s=0)
