"""Rates measured as the best of repeats.

As ``timeit`` advises, the fastest repeat is the one to report: a slower repeat measures other
work on the machine (another process, a page fault on a first allocation), not the code timed.
Repeats go on for a minimum time too, so that a short measurement's repeats are spread over a
window longer than a passing disturbance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

REPEATS = 5  # at least this many repeats of every rate the book measures
MIN_SECONDS = 2.0  # and at least this long in all


def best_rate(
    run: Callable[[], int],
    repeats: int = REPEATS,
    min_seconds: float = MIN_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Items per second of the fastest call of ``run`` (which does the work and returns how
    many items it processed), called ``repeats`` times and until ``min_seconds`` have passed."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    best, done, spent = 0.0, 0, 0.0
    while done < repeats or spent < min_seconds:
        start = clock()
        items = run()
        seconds = clock() - start
        best, done, spent = max(best, items / seconds), done + 1, spent + seconds
    return best
