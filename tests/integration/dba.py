"""What a hostile database administrator does to a demo folder's log, with the project's own canonical form.

Not a test module: the tamper tests' helper (from the issue-10 attack review). ``rewrite_copy``
copies a data folder (``audit.db`` through SQLite's backup API, every other file as is: the
administrator holds the database, not the key custodian's files) and edits the copy's log:
deletes records, drops the tail, renumbers and rechains the rest, rewrites every record time to
"just now" (``retime``), deletes checkpoint and cosignature rows.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path

from gateway.core.audit_chain import GENESIS_HASH, RECORD_COLUMNS, _canonical_text, _hash_text

__all__ = ["rewrite_copy", "rewrite_in_place"]


def rewrite_copy(src: Path, dst: Path, **edits: object) -> int:
    """Copy ``src`` to ``dst`` and rewrite the copy's log (see ``rewrite_in_place``); return its new size."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("audit.db*", "gateway.lock"))
    s, d = sqlite3.connect(src / "audit.db"), sqlite3.connect(dst / "audit.db")
    s.backup(d)
    s.close()
    d.close()
    return rewrite_in_place(dst, **edits)  # type: ignore[arg-type]


def rewrite_in_place(
    folder: Path, *, delete: Collection[int] = (), drop_tail: int = 0, retime: bool = False,
    drop_checkpoints: bool = False, drop_cosignatures: bool = False,
) -> int:  # fmt: skip
    """Rewrite ``folder/audit.db`` as the administrator would; return the log's new size."""
    d = sqlite3.connect(folder / "audit.db", isolation_level=None)
    d.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
    cols = ", ".join(RECORD_COLUMNS)
    rows = [r for r in d.execute(f"SELECT seq, {cols} FROM audit_log ORDER BY seq") if r[0] not in set(delete)]
    rows = rows[: len(rows) - drop_tail]
    d.execute("DELETE FROM audit_log")
    prev, now = GENESIS_HASH, time.time_ns() // 1000
    for i, r in enumerate(rows, start=1):
        values = list(r[1:])
        if retime:
            values[0] = now - (len(rows) - i) * 1000
        digest = _hash_text(prev, _canonical_text((i, *values)))
        marks = ",".join("?" * (len(values) + 3))
        d.execute(f"INSERT INTO audit_log (seq, {cols}, prev_hash, hash) VALUES ({marks})", (i, *values, prev, digest))
        prev = digest
    d.execute("DELETE FROM audit_head")
    d.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (len(rows), prev))
    if drop_checkpoints:
        d.execute("DELETE FROM audit_checkpoint")
    if drop_cosignatures:
        d.execute("DELETE FROM audit_cosignature")
    d.close()
    return len(rows)
