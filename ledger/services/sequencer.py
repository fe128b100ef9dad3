"""Group commit: one sequencer thread per process integrates what many submitters hand it.

Submitters verify their records themselves (in parallel, no lock), then queue them here. The
sequencer thread takes everything queued (up to ``max_batch`` records), integrates it in ONE
transaction under the database's sequencer lock — so several processes, on one machine or many,
serialise through the database and never through one process's memory — commits once, and only
then wakes each submitter with its receipt. A crash before the commit acknowledges nothing; a
crash after it loses nothing.

With ``pace_batches`` (``serve``'s ``PROVLEDGER_PACE_BATCHES``; by default with several
processes) and on SQLite, while the sequencer holds the lock, the batches this process is
preparing wait between their records (``Sequencer.pace``): every group commit, across all
processes, runs one at a time under that lock, SQLite's writes run on the sequencer's own thread,
and preparers beside it in the same process took the interpreter (the GIL) from it between rows
and stretched its locked section. Meanwhile the other processes' preparers have the other cores.
(On PostgreSQL the server does the writes: the sequencer never paces there.)

A record that makes the batch's transaction fail by itself (the database refuses one of its
values) is found and left out (``ledger.services.isolate``): the rest commit, and only its
submitter gets the error.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ledger.db.engine import is_sqlite
from ledger.errors import IntegrityError, LedgerError, UnavailableError
from ledger.services.append import Appended, Prepared, RightEdge, dry_run, integrate
from ledger.services.isolate import commit_isolating
from ledger.services.log import LogIdentity

__all__ = ["Sequencer"]

log = logging.getLogger(__name__)

#: The longest ``Sequencer.pace`` waits (seconds): a safeguard only, the lock is held for one
#: group's writes and the preparer's submitter waits for the next group commit anyway.
PACE_LIMIT = 0.5


@dataclass
class _Job:
    batch: Sequence[Prepared]
    done: Future[list[Appended | LedgerError]] = field(default_factory=Future)


class Sequencer:
    def __init__(
        self,
        sessions: Callable[[], Session],
        identity: LogIdentity,
        *,
        max_batch: int = 2000,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[BaseException], None] | None = None,
        on_commit: Callable[[int], None] | None = None,
        on_batch: Callable[[], None] | None = None,
        pace_batches: bool = False,
    ) -> None:
        self._sessions = sessions
        self._identity = identity
        self._max_batch = max_batch
        self._clock = clock
        self._on_failure = on_failure
        self._on_commit = on_commit
        self._on_batch = on_batch  # after every committed group (the /metrics counter)
        self.pace_batches = pace_batches  # ``pace`` waits (on SQLite) while this sequencer writes
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.entries = 0
        self._edge: RightEdge | None = None
        self._handoff: int | None = None  # the fd of the SQLite hand-off lock file, once opened
        self._unlocked = threading.Event()  # clear while this sequencer holds the write lock
        self._unlocked.set()
        #: set when the store was found cut or rewritten behind this process's back: writes stop
        self.halted: IntegrityError | None = None

    def submit(self, batch: Sequence[Prepared], *, timeout: float = 120.0) -> list[Appended | LedgerError]:
        """Queue prepared records; block until they are committed. Per record, in order, its
        receipt or the error that refused it at integration (under the lock: a key event's prev;
        or the store refused it, ``ledger.services.isolate``); raises when the whole batch failed
        (the database is down, the store is damaged)."""
        if not batch:
            return []
        if self.halted is not None:
            raise self.halted
        self._ensure_started()
        job = _Job(batch)
        self._queue.put(job)
        try:
            return job.done.result(timeout=timeout)
        except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError since 3.11
            raise UnavailableError(f"the sequencer did not commit within {timeout:.0f} s; the records may still land") from exc

    def pace(self) -> None:
        """Between the records of a batch being prepared in this process: while this process's
        sequencer holds SQLite's write lock, wait (at most ``PACE_LIMIT``) until it lets go. Only
        with ``pace_batches``; otherwise it returns at once.

        On the batch route (2 ``serve`` processes, 4 × 200) the locked section took 120–152 µs
        an entry of wall time without pacing and 82–112 µs with it, for about the same CPU of the
        sequencer's own; throughput gained a few per cent on a slower host and nothing on a
        faster one, and with one process it lost some
        (``bench/bench_pacing.py``; README, Appending)."""
        self._unlocked.wait(PACE_LIMIT)

    def _ensure_started(self) -> None:
        # Started lazily so that it lives in the process that serves (after a WSGI server forks).
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="provledger-sequencer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
        if thread is None or not thread.is_alive():
            fd, self._handoff = self._handoff, None
            if fd is not None and fd >= 0:
                os.close(fd)

    def _take_jobs(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, count = [first], len(first.batch)
        while count < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            jobs.append(job)
            count += len(job.batch)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take_jobs()
            if jobs is None:
                return
            records = [p for job in jobs for p in job.batch]
            now = int(self._clock())
            try:
                committed, kept, refused = commit_isolating(
                    records, lambda batch: self._integrate(batch, now), dry_run(self._sessions, self._identity, now=now)
                )
            except BaseException as exc:  # noqa: BLE001 - every submitter must hear of it
                if isinstance(exc, IntegrityError):
                    self.halted = exc
                    log.error("writes stopped: the store failed the right-edge check at index %s: %s", exc.first_bad_index, exc)
                log.exception("batch of %d records failed; nothing was committed", sum(len(j.batch) for j in jobs))
                error = exc if isinstance(exc, LedgerError) else UnavailableError(f"the batch could not be committed: {exc}")
                for job in jobs:
                    job.done.set_exception(error)
                if self._on_failure is not None:
                    self._on_failure(exc)
                continue
            results: list[Appended | LedgerError] = [refused[i] if i in refused else None for i in range(len(records))]  # type: ignore[misc]
            for position, appended in zip(kept, committed or (), strict=True):
                results[position] = appended
            start = 0
            for job in jobs:
                job.done.set_result(results[start : start + len(job.batch)])
                start += len(job.batch)

    @contextlib.contextmanager
    def _sqlite_handoff(self, session: Session) -> Iterator[None]:
        """On SQLite, queue behind other processes' sequencers on an flock of ``<db>-sequencer.lock``
        before BEGIN IMMEDIATE: a blocked flock wakes the moment the holder commits, where SQLite's
        busy handler would poll with sleeps of up to 100 ms. The database lock stays what keeps
        the log consistent; this only makes hand-offs between ``serve`` workers prompt."""
        if self._handoff is None:
            bind = session.get_bind()
            database = bind.url.database if bind.dialect.name == "sqlite" else None
            if not database or database == ":memory:":
                self._handoff = -1
            else:
                self._handoff = os.open(database + "-sequencer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        if self._handoff < 0:
            yield
            return
        fcntl.flock(self._handoff, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._handoff, fcntl.LOCK_UN)

    def _integrate(self, batch: Sequence[Prepared], now: int) -> list[Appended | LedgerError]:
        with self._sessions() as session:
            # SQLite writes on this thread: the batches being prepared here make way (``pace``)
            pacing = self.pace_batches and is_sqlite(session.get_bind())  # type: ignore[arg-type]
            on_locked = self._unlocked.clear if pacing else None
            try:
                with self._sqlite_handoff(session), session.begin():
                    integration = integrate(session, batch, self._identity, now=now, edge=self._edge, on_locked=on_locked)
            except BaseException:
                self._edge = None  # re-read the right edge from the store next time
                raise
            finally:
                self._unlocked.set()  # committed or rolled back, and the lock released
            self._edge = integration.edge
            if integration.checkpoint_note is not None and self._on_commit is not None:
                self._on_commit(integration.tree_size)  # committed: a new checkpoint to cosign
            self.batches += 1
            if self._on_batch is not None:
                self._on_batch()
            self.entries += sum(integration.created)
            return integration.answers(session)
