"""The transformers engine on a CUDA GPU: generation and judge (next-token) throughput, batch size against speed.

    python bench/gpu_engine.py --tokenizer DIR [--layers 16 --hidden 2048 ...] [--prompts 64]

Needs torch with CUDA and transformers only (no Spark, no MLflow): it builds a randomly initialised Llama-shaped
model (default: the Llama-3.2-1B shape with SmolLM2's vocabulary) directly on the GPU in bfloat16, saves it, loads it
through backforth's TransformersEngine exactly as an executor would, and times ``generate`` and ``next_token_probs``
on document-length prompts. Random weights: the figures are speed, not quality (the text is noise). It also checks
that the same seed gives the same text and that the judge's probabilities are valid. The last line is key=value
pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(
    folder: Path, tokenizer: Path, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, device: str
) -> float:
    """A random Llama of the given shape, initialised on the GPU in bf16 and saved with the tokenizer; returns GB."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=8192, bos_token_id=1,
        eos_token_id=2, pad_token_id=2, tie_word_embeddings=True, torch_dtype="bfloat16",
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, folder / name)
    size = sum(p.numel() for p in model.parameters()) * 2 / 1e9
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder with tokenizer.json (SmolLM2's)")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=8192)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--prompt-words", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="8,32,64")
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: run the same code on the CPU (tiny shapes)")
    args = parser.parse_args(argv)

    import torch

    from backforth.engines.base import ModelProfile, Request, Sampling
    from backforth.engines.hf import TransformersEngine

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        raise SystemExit("no CUDA device (use --cpu-smoke to check the script on the CPU)")
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    words = "the cluster reads each shard of the corpus and writes one table per step".split()
    lengths = [args.prompt_words + 7 * (i % 9) for i in range(args.prompts)]
    docs = [" ".join(words[(i + j) % len(words)] for j in range(n)) for i, n in enumerate(lengths)]
    requests = [Request(messages=[{"role": "user", "content": f"Write the question this text answers:\n{d}"}],
                        seed=1000 + i) for i, d in enumerate(docs)]  # fmt: skip
    sampling = Sampling(temperature=0.7, top_p=0.9, max_tokens=args.max_tokens, seed=1234)
    results = {"gpu": gpu}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        results["model_gb"] = round(
            build_model(
                Path(tmp),
                args.tokenizer,
                args.layers,
                args.hidden,
                args.heads,
                args.kv_heads,
                args.ffn,
                "cuda" if cuda else "cpu",
            ),
            2,
        )
        print(
            f"built a random {results['model_gb']} GB Llama-shaped model in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            profile = ModelProfile(name=f"gpu-bench-{batch}", backend="transformers", model=tmp, tokenizer=tmp,
                                   dtype="bfloat16", batch_size=batch, max_model_len=8192)  # fmt: skip
            t0 = time.perf_counter()
            engine = TransformersEngine(profile)
            load_s = time.perf_counter() - t0
            device = str(next(engine.model.parameters()).device)
            engine.generate(requests[:batch], sampling)  # warm-up (kernels, allocator)
            sync()
            t0 = time.perf_counter()
            out = engine.generate(requests, sampling)
            sync()
            gen_s = time.perf_counter() - t0
            again = engine.generate(requests[:batch], sampling)
            same = [g.text for g in again] == [g.text for g in out[:batch]]
            prompt_tok = sum(g.prompt_tokens for g in out)
            out_tok = sum(g.output_tokens for g in out)
            t0 = time.perf_counter()
            judged = engine.next_token_probs(requests, ["1", "2", "3", "4", "5"])
            sync()
            judge_s = time.perf_counter() - t0
            # the same judge computing every position's logits (the engine keeps only the last position's)
            keep = engine._last_only
            engine._last_only = {}
            t0 = time.perf_counter()
            full = engine.next_token_probs(requests, ["1", "2", "3", "4", "5"])
            sync()
            full_s = time.perf_counter() - t0
            engine._last_only = keep
            agree = max(abs(a.probs[k] - b.probs[k]) for a, b in zip(judged, full, strict=True) for k in a.probs)
            greedy = Sampling(temperature=0.0, max_tokens=args.max_tokens, seed=1234)
            g1 = [g.text for g in engine.generate(requests[:batch], greedy)]
            g2 = [g.text for g in engine.generate(requests[:batch], greedy)]
            masses = [sum(g.probs.values()) for g in judged]
            valid = all(0.0 <= m <= 1.0 + 1e-3 for m in masses) and all(g.error is None for g in judged)
            row = {
                "device": device, "load_s": round(load_s, 1), "gen_s": round(gen_s, 2),
                "out_tok_s": round(out_tok / gen_s, 1), "total_tok_s": round((prompt_tok + out_tok) / gen_s, 1),
                "judge_pairs_s": round(len(judged) / judge_s, 1),
                "judge_all_logits_pairs_s": round(len(full) / full_s, 1),
                "judge_max_prob_diff": round(agree, 5), "same_seed_same_text": same, "same_greedy_text": g1 == g2,
                "probs_valid": valid,
                "mean_prompt_tokens": round(prompt_tok / len(out)),
                "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1) if cuda else None,
            }  # fmt: skip
            results[f"batch{batch}"] = row
            print(f"batch {batch}: {json.dumps(row)}", flush=True)
            engine.close()
            del engine
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    best = max((v for k, v in results.items() if k.startswith("batch")), key=lambda r: r["out_tok_s"])
    ratio = best["out_tok_s"] / results[f"batch{args.batch_sizes.split(',')[0]}"]["out_tok_s"]
    print(json.dumps(results))
    print(f"gpu={gpu.replace(' ', '_')} model_gb={results['model_gb']} best_out_tok_s={best['out_tok_s']} "
          f"best_judge_pairs_s={best['judge_pairs_s']} judge_all_logits_pairs_s={best['judge_all_logits_pairs_s']} "
          f"batch_speedup={ratio:.2f} device={best['device']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
