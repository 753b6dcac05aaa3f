"""A least-recently-used cache bounded by entries and by bytes, counting its hits, misses and evictions.

Every cache the webhook keeps is filled from request content a tenant writes (selector values, owner names, MIG
profile names), so each one needs a bound on what a stream of distinct, large keys can make it hold — a count of
entries alone lets a few thousand megabyte-sized keys take gigabytes. Sizes are estimates given by the owner of
the cache (the lengths of the strings it keeps), which is what an attacker can inflate.

Pure Python with a lock and no dependency, so the catalog and the workload adapters can use it; the webhook's
metrics read ``stats()`` at scrape time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

ENTRY_OVERHEAD: Final = 200
"""Bytes counted for each entry besides what ``size`` says: the dict slot, the key tuple and the value object."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    name: str
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_entries: int
    max_bytes: int


class BoundedCache(Generic[K, V]):
    """``get``/``put`` with least-recently-used eviction once ``max_entries`` or ``max_bytes`` would be passed.
    An entry larger than ``max_bytes`` on its own is not kept (the caller computes it again next time). Thread-safe."""

    def __init__(self, name: str, *, max_entries: int, max_bytes: int, size: Callable[[K, V], int]) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a bounded cache needs room for at least one entry and one byte")
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: K) -> V | None:
        """The cached value, or ``None`` on a miss (cache ``None`` itself through ``lookup``)."""
        found = self.lookup(key)
        return None if found is None else found[0]

    def lookup(self, key: K) -> tuple[V] | None:
        """``(value,)`` on a hit (the entry becomes the most recently used), ``None`` on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return (entry[0],)

    def put(self, key: K, value: V) -> None:
        cost = self._size(key, value) + ENTRY_OVERHEAD
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if cost > self.max_bytes:
                return
            self._entries[key] = (value, cost)
            self._bytes += cost
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
                self.evictions += 1

    def discard(self, key: K) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def discard_where(self, predicate: Callable[[K], bool]) -> None:
        """Drop every entry whose key matches (a scan: for rare events such as a deletion)."""
        with self._lock:
            for key in [k for k in self._entries if predicate(k)]:
                self._bytes -= self._entries.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._entries))

    @property
    def bytes(self) -> int:
        return self._bytes

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.name, self.hits, self.misses, self.evictions, len(self._entries), self._bytes,
                              self.max_entries, self.max_bytes)


def text_size(*parts: object) -> int:
    """Bytes a cache entry holds in its strings (a str of n ASCII characters takes about n bytes, plus ~50)."""
    total = 0
    for part in parts:
        if isinstance(part, str):
            total += len(part) + 50
        elif isinstance(part, tuple | list | frozenset | set):
            total += 56 + 8 * len(part) + text_size(*part)
        else:
            total += 32
    return total
