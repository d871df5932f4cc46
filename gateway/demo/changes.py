"""The demo population register's change log (DEMO ONLY): what ``gateway demo change`` records and
``registry.population.v1.PopulationRegistry/WatchChanges`` streams.

A SQLite file in the demo data folder (``demo-population-changes.db``): the CLI appends a change,
the registry process polls the file and streams each new change to its watchers, so sequences
survive a registry restart. The sequence is SQLite's ``AUTOINCREMENT`` rowid (strictly increasing,
never reused); the event id is derived from it (``rnpp-<sequence>``), so it is stable. Without a
file the log lives in memory (tests that run the registry in-process).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.demo._model import Address

__all__ = ["CHANGES_FILE", "ChangeLog", "RecordedChange", "parse_address"]

CHANGES_FILE = "demo-population-changes.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  national_id TEXT NOT NULL,
  changed TEXT NOT NULL,
  effective_date TEXT NOT NULL,
  address TEXT NOT NULL,
  recorded_us INTEGER NOT NULL
);
"""
_ADDRESS = re.compile(r"^\s*(?P<number>[0-9]+[A-Za-z]?)[ ,]+(?P<street>[^,]+),\s*(?P<postcode>L-[0-9]{4})\s+"
                      r"(?P<locality>.+?)\s*$")  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordedChange:
    sequence: int
    national_id: str
    changed: tuple[str, ...]      # ("ADDRESS",)
    effective_date: dt.date
    address: Address
    recorded_us: int

    @property
    def event_id(self) -> str:
        return f"rnpp-{self.sequence}"


def parse_address(text: str, commune: str = "") -> Address:
    """"12 rue de la Gare, L-1234 Luxembourg" -> an ``Address``; ``ValueError`` if it does not read so."""
    m = _ADDRESS.match(text)
    if m is None:
        raise ValueError('an address reads "<number> <street>, L-<4 digits> <locality>"')
    locality = m["locality"].strip()
    return Address(m["number"], m["street"].strip(), m["postcode"], locality, commune or locality)


class ChangeLog:
    """Append and read the changes; safe across threads and processes (SQLite, WAL for a file)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def record(self, national_id: str, address: Address, effective_date: dt.date,
               changed: tuple[str, ...] = ("ADDRESS",)) -> RecordedChange:  # fmt: skip
        now = time.time_ns() // 1000
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO changes (national_id, changed, effective_date, address, recorded_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (national_id, ",".join(changed), effective_date.isoformat(), json.dumps(asdict(address)), now))
            sequence = int(cur.lastrowid or 0)
        return RecordedChange(sequence, national_id, changed, effective_date, address, now)

    def after_sync(self, sequence: int, limit: int = 1000) -> list[RecordedChange]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, national_id, changed, effective_date, address, recorded_us FROM changes "
                "WHERE sequence > ? ORDER BY sequence LIMIT ?", (sequence, limit)).fetchall()  # fmt: skip
        return [RecordedChange(int(r[0]), r[1], tuple(r[2].split(",")), dt.date.fromisoformat(r[3]),
                               Address(**json.loads(r[4])), int(r[5])) for r in rows]  # fmt: skip

    async def after(self, sequence: int, limit: int = 1000) -> list[RecordedChange]:
        return await asyncio.to_thread(self.after_sync, sequence, limit)

    def latest_addresses(self) -> dict[str, Address]:
        """Each person's address after every recorded change (what GetPerson answers)."""
        out: dict[str, Address] = {}
        sequence = 0
        while batch := self.after_sync(sequence):
            for c in batch:
                out[c.national_id] = c.address
            sequence = batch[-1].sequence
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
