"""ProcessCache: one object per key and process, built once even when threads ask at the same time."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from backforth.cache import ProcessCache


def test_built_once_for_concurrent_callers() -> None:
    cache: ProcessCache[object] = ProcessCache("test")
    built: list[int] = []

    def factory() -> object:
        built.append(1)
        time.sleep(0.05)  # a slow build: the other threads arrive while it runs
        return object()

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_create("k", factory))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(got) == 8 and all(g is got[0] for g in got)
    assert cache.get_or_create("other", object) is not got[0] and len(cache) == 2 and "k" in cache


def test_a_failed_build_caches_nothing() -> None:
    cache: ProcessCache[str] = ProcessCache("test")

    def broken() -> str:
        raise OSError("no model file")

    with pytest.raises(OSError, match="no model file"):
        cache.get_or_create("k", broken)
    assert "k" not in cache
    assert cache.get_or_create("k", lambda: "built") == "built"


def test_a_factory_may_use_its_own_cache() -> None:
    cache: ProcessCache[str] = ProcessCache("test")
    assert cache.get_or_create("outer", lambda: cache.get_or_create("inner", lambda: "x") + "y") == "xy"


def test_engines_are_cached_per_profile(tmp_path: Path) -> None:
    from backforth.engines import ModelProfile, get_engine

    profile = ModelProfile(name="fake", backend="fake", options={"log_dir": str(tmp_path)})
    first = get_engine(profile)
    assert get_engine(ModelProfile(name="fake", backend="fake", options={"log_dir": str(tmp_path)})) is first
    other = get_engine(ModelProfile(name="fake", backend="fake", options={"log_dir": str(tmp_path / "b")}))
    assert other is not first
    events = [json.loads(line) for p in tmp_path.glob("engine-*.jsonl") for line in p.read_text().splitlines()]
    assert [e["event"] for e in events] == ["construct"]  # the first profile's engine was built once
