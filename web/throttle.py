"""The admin-login throttle shared by ``serve``'s worker processes.

Each worker process has its own memory, and connections are spread over the processes
(``web.balance``): a throttle kept per process would let a client that opens new connections
try N times as often with N workers. ``SharedLoginThrottle`` keeps the same records, under the
same rules (``ledger.services.sessions.LoginThrottle``), in a table of anonymous shared memory
created before the workers fork, behind a lock they share.

The table has a fixed size. A client is found by a 64-bit hash of its key in a short run of
slots; when the run is full, the record whose last failure is oldest gives way. The across-all-
clients record has a slot of its own, so it is never the one that gives way.
"""

from __future__ import annotations

import hashlib
import logging
import math
import mmap
import multiprocessing
import struct
import threading

from ledger.services.sessions import LoginThrottle, FailureRecord

__all__ = ["SharedLoginThrottle"]

log = logging.getLogger(__name__)

_SLOT = struct.Struct("=QqQ")  # key hash (0: empty), failures, last failure (epoch milliseconds)
#: slots in the table (slot 0 is the across-all-clients record)
SLOTS = 16_384
#: slots searched for a client's record, from the one its hash names
RUN = 32


#: how long a process waits for the table's lock before it goes on without it
LOCK_SECONDS = 1.0


class _SharedLock:
    """A process-shared lock that a dead holder cannot wedge: a worker killed inside the few
    microseconds it holds the lock would otherwise stop every login in every other worker.
    After ``LOCK_SECONDS`` the caller goes on unlocked (at worst a failure count is lost)."""

    def __init__(self) -> None:
        self._lock = multiprocessing.get_context("fork").Lock()  # a process-shared semaphore
        self._held = threading.local()

    def __enter__(self) -> None:
        self._held.value = self._lock.acquire(timeout=LOCK_SECONDS)
        if not self._held.value:
            log.warning("the shared login throttle's lock was not released (a worker died holding it?); going on without it")

    def __exit__(self, *_exc: object) -> None:
        if self._held.value:
            self._lock.release()


class SharedLoginThrottle(LoginThrottle):
    """Create it in the process that forks the workers, before they fork."""

    def __init__(self, **limits: int) -> None:
        super().__init__(**limits)
        self._table = mmap.mmap(-1, _SLOT.size * SLOTS)  # MAP_SHARED | MAP_ANONYMOUS: the children see each other's writes
        self._lock = _SharedLock()

    def _hash(self, key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") | 1

    def _run(self, key: str) -> list[int]:
        if key == self.GLOBAL:
            return [0]
        first = self._hash(key) % (SLOTS - 1)
        return [1 + (first + i) % (SLOTS - 1) for i in range(RUN)]

    def _read(self, slot: int) -> tuple[int, int, int]:
        return _SLOT.unpack_from(self._table, slot * _SLOT.size)  # type: ignore[return-value]

    def _find(self, key: str) -> int | None:
        wanted = self._hash(key)
        for slot in self._run(key):
            if self._read(slot)[0] == wanted:
                return slot
        return None

    def _load(self, key: str) -> FailureRecord | None:
        slot = self._find(key)
        if slot is None:
            return None
        _, failures, last = self._read(slot)
        return FailureRecord(failures, last / 1000)

    def _store(self, key: str, record: FailureRecord) -> None:
        slot = self._find(key)
        if slot is None:  # a free slot of the run, else the one whose last failure is oldest
            run = self._run(key)
            slot = next((s for s in run if self._read(s)[0] == 0), None)
            if slot is None:
                slot = min(run, key=lambda s: self._read(s)[2])
        last = max(math.ceil(record.last_failure * 1000), 0)  # rounded up: never a shorter wait
        _SLOT.pack_into(self._table, slot * _SLOT.size, self._hash(key), record.failures, last)

    def _delete(self, key: str) -> None:
        slot = self._find(key)
        if slot is not None:
            _SLOT.pack_into(self._table, slot * _SLOT.size, 0, 0, 0)
