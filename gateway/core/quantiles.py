"""Percentiles over any number of values in bounded memory, to within 1 %.

Values (microseconds) are counted in log-spaced buckets of ratio 1.01; a
percentile is the upper bound of the bucket holding the nearest-rank value, so
it is never below the exact value and at most 1 % above it. A year of exchanges
fits in a few hundred counters.
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["RELATIVE_ERROR", "LogHistogram"]

_RATIO = 1.01
_LOG_RATIO = math.log(_RATIO)
#: The largest relative error of a reported percentile.
RELATIVE_ERROR = _RATIO - 1


def _bucket(value: int) -> int:
    """Bucket i holds integers up to floor(1.01**i); 0 and 1 share bucket 0."""
    if value <= 1:
        return 0
    index = math.ceil(math.log(value) / _LOG_RATIO)
    if math.floor(_RATIO**index) < value:  # float rounding: never report below the value
        index += 1
    return index


class LogHistogram:
    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0

    def add(self, value: int) -> None:
        self._buckets[_bucket(value)] += 1
        self.count += 1

    def merge(self, other: LogHistogram) -> None:
        self._buckets.update(other._buckets)
        self.count += other.count

    def percentile(self, p: float) -> int | None:
        """Nearest-rank percentile (``p`` in 0..100), rounded up to the bucket bound; None if empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return math.floor(_RATIO**index) if index else 1
        raise AssertionError("unreachable: rank <= count")
