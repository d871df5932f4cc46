"""The cyclic garbage collector, tuned once a gateway process has started.

A started gateway holds ≈ 175,000 long-lived container objects (contracts, descriptors, the web
framework, configuration, caches). CPython's collector walks all of them at every full collection,
and with its default thresholds (700, 10, 10) it ran ≈ 5 full and ≈ 560 young collections per
10,000 bulk items: ≈ 55–60 µs of CPU per item, 14 % of it (measured in process, gc.callbacks).

* ``gc.freeze()`` after start-up (after one collection of the start-up garbage) moves those objects
  to the permanent generation: later collections never walk them. They are still freed by reference
  counting; only a reference cycle among them would be kept, and start-up leaves none behind (it
  was collected just before).
* The young generation's threshold goes from 700 to ``YOUNG_THRESHOLD`` allocations: a busy process
  allocates and frees thousands of short-lived containers per exchange, and each young collection
  costs a pass over the survivors. Cyclic garbage waits a little longer for its collection
  (at most ``YOUNG_THRESHOLD`` net new containers).

This is what CPython's documentation suggests for long-running servers (``gc.freeze``) and what
large Python services do; ADR 0011 has the figures.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_after_start"]

#: Net container allocations between two young collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


def tune_after_start() -> int:
    """Collect start-up garbage, freeze what is left, raise the young threshold; returns the count frozen."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    return gc.get_freeze_count()
