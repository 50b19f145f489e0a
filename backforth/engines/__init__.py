"""LLM engines that live inside Spark Python workers: vLLM (GPU and CPU build), transformers, and a fake for tests."""

from backforth.engines.base import (
    Engine,
    Generation,
    ModelProfile,
    Request,
    Sampling,
    build_engine,
    get_engine,
)
from backforth.engines.profiles import load_profile

__all__ = [
    "Engine",
    "Generation",
    "ModelProfile",
    "Request",
    "Sampling",
    "build_engine",
    "get_engine",
    "load_profile",
]
