"""Label values for metrics, spans and logs: bounded, and never personal data.

Caller-chosen strings (the ``x-purpose`` header, gRPC method names, URL paths)
are used as labels only when they name something the gateway knows;
everything else becomes ``_other``. That bounds cardinality and keeps a
national id typed into a header out of every telemetry signal.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["OTHER", "known_or_other"]

OTHER = "_other"


def known_or_other(value: str, known: Collection[str]) -> str:
    """``value`` if it is one of ``known``; "" stays ""; anything else is ``_other``."""
    if not value:
        return ""
    return value if value in known else OTHER
