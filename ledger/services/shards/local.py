"""The signature-level audit in one process: the workers' shards, on a process pool.

``provledger audit --signatures`` plans the same shards as ``audit --workers``, re-measures
each with the same :func:`~ledger.services.shards.verify.verify_shard` (every leaf hash, every
DSSE signature, the chain, the interior hashes, the checkpoints) on every core, as ``import``
verifies on every core, and combines them with the same
:func:`~ledger.services.shards.combine.combine_shards`: the report is the workers' report. It
needs no Redis and records nothing (it only reads the store).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.engine import make_engine, make_session_factory
from ledger.services.log import LogIdentity
from ledger.services.shards.combine import combine_shards
from ledger.services.shards.plan import Shard, plan_shards, shard_level_for
from ledger.services.shards.results import DistributedReport, ShardResult
from ledger.services.shards.verify import verify_shard

__all__ = ["audit_signatures"]

#: The engine of a pool process, made once when it starts.
_engine: Engine | None = None


def _init_process(database_url: str) -> None:
    global _engine  # noqa: PLW0603 - one engine per pool process
    _engine = make_engine(database_url)


def _verify_in_process(shard: Shard, vkey: str, origin: str) -> ShardResult:
    assert _engine is not None, "shards.local: the pool process was not initialised"
    with make_session_factory(_engine)() as session:
        return verify_shard(session, shard, vkey=vkey, origin=origin)


def audit_signatures(
    sessions: Callable[[], Session],
    log: LogIdentity,
    *,
    database_url: str,
    processes: int | None = None,
    shard_level: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DistributedReport:
    """Re-measure the whole ledger, re-verifying every signature, on ``processes`` processes
    (default: one per core; 1 runs in this process). ``progress(done, total)`` counts entries."""
    with sessions() as session:
        size = store.current_size(session)
    level = shard_level_for(size) if shard_level is None else shard_level
    plan = plan_shards(size, level)
    processes = max(1, min((os.cpu_count() or 1) if processes is None else processes, len(plan)))
    results: list[ShardResult | None] = [None] * len(plan)
    finished = 0
    if progress is not None:
        progress(0, size)
    if processes == 1:
        with sessions() as session:
            for shard in plan:
                results[shard.number] = verify_shard(
                    session,
                    shard,
                    vkey=log.vkey,
                    origin=log.origin,
                    progress=None if progress is None else (lambda n, base=finished: progress(base + n, size)),
                )
                session.rollback()
                finished += shard.end - shard.start
                if progress is not None:
                    progress(finished, size)
    else:
        # spawn, not fork: this process holds database connections (as in ledger.services.bulk)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=context, initializer=_init_process, initargs=(database_url,)) as pool:
            pending: dict[Future[ShardResult], Shard] = {
                pool.submit(_verify_in_process, shard, log.vkey, log.origin): shard for shard in plan
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    shard = pending.pop(future)
                    results[shard.number] = future.result()
                    finished += shard.end - shard.start
                    if progress is not None:
                        progress(finished, size)
    with sessions() as session:
        return combine_shards(session, size, [r for r in results if r is not None], vkey=log.vkey, origin=log.origin)
