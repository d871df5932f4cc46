"""The wall clock, read at the edges and passed in (``clock_us=now_us``): the core never reads it itself."""

from __future__ import annotations

import time

__all__ = ["now_us"]


def now_us() -> int:
    """Now, in epoch microseconds."""
    return time.time_ns() // 1000
