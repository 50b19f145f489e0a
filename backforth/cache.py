"""Objects built once per process and reused by every later task: LLM engines, tokenizers, the language model.

Spark reuses Python workers across tasks (``spark.python.worker.reuse``), so a module-level cache lives as long as
the worker. Each :class:`ProcessCache` has its own lock, held while its factory runs: two threads of one process
never build the same object twice (an engine may hold a GPU), and building an engine does not block a tokenizer
lookup in another cache. A factory that raises caches nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ProcessCache(Generic[V]):
    """A named, locked ``key → object`` cache of this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[Hashable, V] = {}
        self._lock = threading.RLock()  # re-entrant: a factory may look up another key of the same cache

    def get_or_create(self, key: Hashable, factory: Callable[[], V]) -> V:
        """The object cached under ``key``, built by ``factory()`` on first use."""
        try:
            return self._items[key]  # built already: no lock (a dict lookup is atomic), so per-row callers don't queue
        except KeyError:
            pass
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        return f"ProcessCache({self.name!r}, {len(self)} items)"
