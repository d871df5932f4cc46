"""Opening SQLite files the way every store here needs them: WAL, a busy timeout, a sync level."""

from __future__ import annotations

import enum
import sqlite3
import time
from pathlib import Path
from typing import Literal

__all__ = ["open_wal"]


class _Unset(enum.Enum):
    UNSET = enum.auto()  # leave sqlite3's own default isolation level


_UNSET = _Unset.UNSET


def open_wal(
    path: str | Path,
    *,
    timeout: float = 5.0,
    synchronous: str = "FULL",
    isolation_level: Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | _Unset | None = _UNSET,
) -> sqlite3.Connection:
    """A connection in WAL mode.

    Switching a new file to WAL takes an exclusive lock and SQLite does not always wait for it
    (``database is locked`` at once when two processes open a fresh file together, e.g. under
    ``--workers 2``): retry within ``timeout``.
    """
    if isolation_level is _UNSET:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=timeout)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=timeout, isolation_level=isolation_level)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn
