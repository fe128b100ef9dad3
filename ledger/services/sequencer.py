"""Group commit: one sequencer thread per process integrates what many submitters hand it.

Submitters verify their records themselves (in parallel, no lock), then queue them here. The
sequencer thread takes everything queued (up to ``max_batch`` records), integrates it in ONE
transaction under the database's sequencer lock — so several processes, on one machine or many,
serialise through the database and never through one process's memory — commits once, and only
then wakes each submitter with its receipt. A crash before the commit acknowledges nothing; a
crash after it loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ledger.errors import IntegrityError, LedgerError, UnavailableError
from ledger.services.append import Appended, Prepared, RightEdge, integrate
from ledger.services.log import LogIdentity
from ledger.services.receipts import receipts

__all__ = ["Sequencer"]

log = logging.getLogger(__name__)


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
    ) -> None:
        self._sessions = sessions
        self._identity = identity
        self._max_batch = max_batch
        self._clock = clock
        self._on_failure = on_failure
        self._on_commit = on_commit
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.entries = 0
        self._edge: RightEdge | None = None
        #: set when the store was found cut or rewritten behind this process's back: writes stop
        self.halted: IntegrityError | None = None

    def submit(self, batch: Sequence[Prepared], *, timeout: float = 120.0) -> list[Appended | LedgerError]:
        """Queue prepared records; block until they are committed (or the batch failed)."""
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
            try:
                results = self._integrate([p for job in jobs for p in job.batch])
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
            start = 0
            for job in jobs:
                job.done.set_result(results[start : start + len(job.batch)])
                start += len(job.batch)

    def _integrate(self, batch: list[Prepared]) -> list[Appended | LedgerError]:
        now = int(self._clock())
        with self._sessions() as session:
            try:
                with session.begin():
                    integration = integrate(session, batch, self._identity, now=now, edge=self._edge)
            except BaseException:
                self._edge = None  # re-read the right edge from the store next time
                raise
            self._edge = integration.edge
            if integration.checkpoint_note is not None and self._on_commit is not None:
                self._on_commit(integration.tree_size)  # committed: a new checkpoint to cosign
            self.batches += 1
            self.entries += sum(integration.created)
            issued = receipts(
                session,
                integration.issued_indexes,
                tree_size=integration.tree_size if integration.checkpoint_note else None,
                checkpoint_note=integration.checkpoint_note,
                known=integration.known_nodes,
                data=integration.new_data,
            )
        return integration.results(issued)
