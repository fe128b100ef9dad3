"""The request counters behind /metrics, added up over ``serve``'s worker processes.

A scrape reaches one worker; counters kept per process would answer with that worker's share
and jump between scrapes. ``SharedCounters`` keeps one row of counters per worker in anonymous
shared memory, created before the workers fork: each worker adds to its own row (under its own
thread lock, so no two processes write one cell) and a scrape sums the rows.
``Counters`` is the same interface for one process.
"""

from __future__ import annotations

import mmap
import struct
import threading

__all__ = ["NAMES", "Counters", "SharedCounters"]

#: what is counted: submissions by outcome, and the groups the sequencer committed
NAMES = ("entries_created", "entries_duplicate", "entries_refused", "batches")
_CELL = struct.Struct("=q")


class Counters:
    """Counters of this process."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(NAMES, 0)
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def total(self, name: str) -> int:
        return self._values[name]


class SharedCounters(Counters):
    """Create it before the workers fork; each worker calls :meth:`bind` with its number."""

    def __init__(self, workers: int) -> None:
        super().__init__()
        self._workers = workers
        self._table = mmap.mmap(-1, _CELL.size * len(NAMES) * workers)  # shared with the children
        self._row = -1

    def bind(self, worker: int) -> None:
        """This process is worker ``worker``: it adds to that row (a worker started again
        carries on its predecessor's counts, as a counter must)."""
        self._row = worker

    def _offset(self, worker: int, name: str) -> int:
        return (worker * len(NAMES) + NAMES.index(name)) * _CELL.size

    def add(self, name: str, n: int = 1) -> None:
        if self._row < 0:
            raise RuntimeError("SharedCounters.bind was not called in this worker")
        with self._lock:
            offset = self._offset(self._row, name)
            (value,) = _CELL.unpack_from(self._table, offset)
            _CELL.pack_into(self._table, offset, value + n)

    def total(self, name: str) -> int:
        return sum(_CELL.unpack_from(self._table, self._offset(w, name))[0] for w in range(self._workers))
