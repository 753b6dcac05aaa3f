"""The bounded LRU cache: never more entries or bytes than its bounds, least recently used out first, counted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpuquota.boundedcache import ENTRY_OVERHEAD, BoundedCache, text_size


def _cache(max_entries: int = 4, max_bytes: int = 10_000) -> BoundedCache[str, str]:
    return BoundedCache("t", max_entries=max_entries, max_bytes=max_bytes, size=lambda k, v: len(k) + len(v))


def test_least_recently_used_goes_first_and_is_counted() -> None:
    cache = _cache(max_entries=2)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"  # a is now the most recent
    cache.put("c", "3")
    assert cache.get("b") is None
    assert list(cache) == ["a", "c"]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.entries) == (1, 1, 1, 2)


def test_bytes_bound_evicts_and_an_oversized_entry_is_not_kept() -> None:
    cache = _cache(max_entries=100, max_bytes=3 * (ENTRY_OVERHEAD + 100))
    for name in "abcd":
        cache.put(name, "x" * 99)
    assert list(cache) == ["b", "c", "d"]
    cache.put("huge", "x" * 10_000)
    assert cache.get("huge") is None
    assert list(cache) == ["b", "c", "d"]


def test_none_values_are_cached_through_lookup() -> None:
    cache: BoundedCache[str, None] = BoundedCache("n", max_entries=2, max_bytes=1000, size=lambda k, v: 0)
    cache.put("k", None)
    assert cache.lookup("k") == (None,)
    assert cache.lookup("other") is None


@given(st.lists(st.tuples(st.sampled_from(["put", "get", "discard"]), st.text(max_size=3), st.integers(0, 400))))
def test_bounds_and_byte_count_hold_after_any_sequence(ops: list[tuple[str, str, int]]) -> None:
    cache = _cache(max_entries=5, max_bytes=1500)
    for op, key, length in ops:
        if op == "put":
            cache.put(key, "v" * length)
        elif op == "get":
            cache.get(key)
        else:
            cache.discard(key)
        assert len(cache) <= 5
        assert cache.bytes <= 1500
        held = {k: cache.lookup(k) for k in list(cache)}
        assert cache.bytes == sum(len(k) + len(v[0]) + ENTRY_OVERHEAD for k, v in held.items() if v is not None)


def test_text_size_counts_nested_strings() -> None:
    assert text_size(("a" * 1000,)) > 1000
    assert text_size("x" * 10, ("y" * 10, "z")) > text_size("x" * 10)
