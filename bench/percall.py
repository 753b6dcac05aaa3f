"""Per-call timing shared by the micro-benchmarks (``bench_extract.py``, ``bench_inventory.py``).

The scripts run as ``python bench/<script>.py``, so this folder is on ``sys.path`` and they import it by name.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_us(
    fn: Callable[[], object], repeat: int, rounds: int = 7, clock: Callable[[], int] = time.perf_counter_ns
) -> tuple[float, float]:
    """(median, best) µs per call over ``rounds`` rounds of ``repeat`` calls: the median is the figure to quote,
    the best shows how much of the spread is the machine (other work, frequency scaling) rather than the code.
    ``clock=time.process_time_ns`` counts this process's CPU time only: steadier on a machine others load."""
    samples = []
    for _ in range(rounds):
        start = clock()
        for _ in range(repeat):
            fn()
        samples.append((clock() - start) / repeat / 1000)
    return statistics.median(samples), min(samples)
