"""Bulk import: verify on every core, sequence in one place.

Signature checks dominate an append. ``import_envelopes`` spreads parsing, verification and
policy over a pool of processes (each holding the registered keys), while this process
integrates batch after batch in order — each in one transaction with its own checkpoint, as
the sequencer does — so the checks of the next batches overlap the writes of this one.

The pool's processes come from a fork server that imports this module once (a fresh process,
like ``spawn``: nothing of this process's database connections or threads is inherited), and
while it starts this process checks the first batches itself rather than wait.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from ledger.records.dsse import MAX_ENVELOPE_BYTES
from ledger.errors import LedgerError
from ledger.services.append import Integration, Prepared, dry_run, integrate, prepare_envelopes
from ledger.trust.predicates import DEPLOYMENT, KEY_EVENT
from ledger.services.isolate import commit_isolating
from ledger.services.deployment import complete_appraisals
from ledger.services.log import LogIdentity
from ledger.services.trust import TrustRegistry, TrustRows, key_rows, registry_from_rows, trust_version

__all__ = ["ImportSummary", "import_envelopes"]

#: Errors kept in the summary (the counts cover all of them).
MAX_REPORTED_ERRORS = 100

#: The collector's first threshold (allocations between passes) while importing.
GC_THRESHOLD = 100_000

#: Whether this process checks batches itself while the pool starts (tests turn it off to
#: send every batch through the pool).
CHECK_WHILE_STARTING = True

#: The trust registry of a pool process (keys, thresholds and the root) and the trust version it
#: was built for: rebuilt when a task brings another version (a key event landed meanwhile).
_registry: tuple[Any, TrustRegistry] | None = None


def _init_worker(version: Any, rows: TrustRows) -> None:
    global _registry  # noqa: PLW0603 - one registry per pool process
    _registry = (version, registry_from_rows(rows))
    # What the process holds now (modules, the registry) lives as long as it does: leave it out
    # of the collector's passes, and pass less often (parsing makes many short-lived objects).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _start(pool: ProcessPoolExecutor, started: threading.Event) -> None:
    """Start the pool's processes (a first task), then set ``started``."""
    try:
        pool.submit(os.getpid).result()
    except BaseException:  # noqa: BLE001, S110 - a broken pool raises again at the next submit, in the caller
        pass
    finally:
        started.set()


def _prepare_chunk(raws: Sequence[bytes], now: int, limit: int, version: Any, rows: TrustRows) -> list[Prepared | LedgerError]:
    global _registry  # noqa: PLW0603 - one registry per pool process
    if _registry is None or _registry[0] != version:
        _registry = (version, registry_from_rows(rows))
    registry = _registry[1]
    return prepare_envelopes(raws, registry, now=now, limit=limit, everything=lambda: registry)


@dataclass
class _Trust:
    """The trust state an import judges by, and the version it is of (``trust_version``)."""

    version: Any
    rows: TrustRows
    registry: TrustRegistry

    @classmethod
    def read(cls, session: Session) -> _Trust:
        version = trust_version(session)  # first: the rows read next are at least this new
        rows = key_rows(session)
        return cls(version, rows, registry_from_rows(rows))


@dataclass
class ImportSummary:
    created: int = 0
    duplicates: int = 0
    refused: int = 0
    tree_size: int = 0
    batches: int = 0
    #: (position in the input, error) of the first refusals
    errors: list[tuple[int, LedgerError]] = field(default_factory=list)


def _batches(raws: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    it = iter(raws)
    while batch := list(islice(it, size)):
        yield batch


def import_envelopes(
    sessions: Callable[[], Session],
    raws: Iterable[bytes],
    log: LogIdentity,
    *,
    workers: int | None = None,
    batch_size: int = 2000,
    clock: Callable[[], float] = time.time,
    limit: int = MAX_ENVELOPE_BYTES,
    progress: Callable[[ImportSummary], None] | None = None,
) -> ImportSummary:
    """Append many envelopes; every signature is checked, every batch committed with a checkpoint."""
    # Each batch allocates (and frees) hundreds of thousands of objects, and the cyclic collector
    # would pass over this process's whole heap every few hundred: collect less often while
    # importing (the few cycles a batch leaves, sessions and transactions, are still collected).
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
    try:
        return _import(sessions, raws, log, workers=workers, batch_size=batch_size, clock=clock, limit=limit, progress=progress)
    finally:
        gc.set_threshold(*thresholds)


def _import(
    sessions: Callable[[], Session],
    raws: Iterable[bytes],
    log: LogIdentity,
    *,
    workers: int | None,
    batch_size: int,
    clock: Callable[[], float],
    limit: int,
    progress: Callable[[ImportSummary], None] | None,
) -> ImportSummary:
    if workers is None:
        workers = os.cpu_count() or 1
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    with sessions() as session:
        trust = _Trust.read(session)
    summary = ImportSummary()
    position = 0

    def refuse(at: int, error: LedgerError) -> None:
        summary.refused += 1
        if len(summary.errors) < MAX_REPORTED_ERRORS:
            summary.errors.append((at, error))

    def integrate_batch(prepared: Sequence[Prepared | LedgerError], now: int) -> None:
        nonlocal position
        if any(isinstance(p, Prepared) and p.predicate_type == DEPLOYMENT for p in prepared):
            # Deployments need the store (firmware measurements, trust) to be appraised.
            with sessions() as session:
                prepared = complete_appraisals(session, prepared, now=now)
        ready: list[Prepared] = []
        where: list[int] = []  # each ready record's position in the input
        for item in prepared:
            if isinstance(item, LedgerError):
                refuse(position, item)
            else:
                ready.append(item)
                where.append(position)
            position += 1
        if ready:

            def commit(batch: Sequence[Prepared]) -> Integration:
                with sessions() as session, session.begin():
                    return integrate(session, batch, log, now=now)

            # a record the store refuses is listed as refused; the rest of its batch goes on
            result, kept, failed = commit_isolating(ready, commit, dry_run(sessions, log, now=now))
            for i in sorted(failed):
                refuse(where[i], failed[i])
            if result is not None:
                for i, error in sorted(result.errors.items()):  # refused under the lock (a key event's prev)
                    refuse(where[kept[i]], error)
                created = sum(result.created)
                summary.created += created
                summary.duplicates += len(kept) - created - len(result.errors)
                summary.tree_size = result.tree_size
                summary.batches += 1

    def prepare_here(batch: list[bytes], now: int) -> list[Prepared | LedgerError]:
        registry = trust.registry
        return prepare_envelopes(batch, registry, now=now, limit=limit, everything=lambda: registry)

    def sequence(batch: list[bytes], prepared: list[Prepared | LedgerError], version: Any, now: int) -> None:
        """Integrate a batch prepared under trust ``version``, in order. The trust state is a fold
        over the log: a key event changes how everything after it is judged. So a batch whose
        version is no longer the ledger's (a key event earlier in this import, or one submitted
        meanwhile) is judged again first, and after each key event the rest is judged again."""
        nonlocal trust
        while batch:
            with sessions() as session:
                moved = trust_version(session) != version
                if moved:
                    trust = _Trust.read(session)
            if moved:  # judged again outside the read transaction (a long reader pins SQLite's WAL)
                prepared, version = prepare_here(batch, now), trust.version
            cut = next((i + 1 for i, p in enumerate(prepared) if isinstance(p, Prepared) and p.predicate_type == KEY_EVENT), len(prepared))
            integrate_batch(prepared[:cut], now)
            batch, prepared = batch[cut:], prepared[cut:]
        if progress is not None:
            progress(summary)

    if workers <= 1:
        for batch in _batches(raws, batch_size):
            now = int(clock())
            sequence(batch, prepare_here(batch, now), trust.version, now)
        return summary

    # A fresh process per worker, not fork: this process may hold database connections and threads.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    batches = _batches(raws, batch_size)
    chunk = max(1, -(-batch_size // workers))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(trust.version, trust.rows)) as pool:
        # Starting the pool blocks until the fork server has imported this module (about half a
        # second): start it on a thread and check the first batches here meanwhile.
        started = threading.Event()
        starter = threading.Thread(target=_start, args=(pool, started), daemon=True)
        starter.start()
        while CHECK_WHILE_STARTING and not started.is_set():
            batch = next(batches, None)
            if batch is None:
                break
            now = int(clock())
            sequence(batch, prepare_here(batch, now), trust.version, now)
        starter.join()
        in_flight: deque[tuple[list[bytes], Any, int, list[Future[list[Prepared | LedgerError]]]]] = deque()

        def submit(batch: list[bytes]) -> None:
            now = int(clock())
            version, rows = trust.version, trust.rows
            futures = [pool.submit(_prepare_chunk, batch[i : i + chunk], now, limit, version, rows) for i in range(0, len(batch), chunk)]
            in_flight.append((batch, version, now, futures))

        def integrate_next() -> None:
            batch, version, now, futures = in_flight.popleft()
            sequence(batch, [p for f in futures for p in f.result()], version, now)

        for batch in batches:
            submit(batch)
            # Keep batches ahead so that verification overlaps integration.
            if len(in_flight) > 2:
                integrate_next()
        while in_flight:
            integrate_next()
    return summary
