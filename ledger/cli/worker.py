"""``provledger worker`` and ``provledger audit --workers``: the command line's side of issue 4.

The composition root may import ``workers`` (lazily, inside these functions); nothing else in
``ledger`` does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from sqlalchemy.orm import Session

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.errors import UnavailableError
from ledger.services import setup, shards
from ledger.services.log import load_log_identity

__all__ = ["audit_with_workers", "progress_bar", "run_worker"]

#: How often the command line looks at the audit's progress.
POLL_SECONDS = 0.5
#: After this long with no shard started, say that no worker seems to be listening.
IDLE_HINT_SECONDS = 15.0


def run_worker(argv: Sequence[str]) -> int:
    """``provledger worker [CELERY WORKER OPTIONS…]``: a Celery worker for this ledger.

    With Redis: ``celery worker`` on the ``workers`` app (options such as ``--concurrency 2``
    or ``--beat`` pass through). Without Redis there is no queue to share, so the worker runs
    the periodic duties (checkpoints, scheduled audits) in this process until interrupted.
    """
    from workers.app import is_embedded, make_celery  # noqa: PLC0415 - composition root
    from workers.embedded import EmbeddedWorker  # noqa: PLC0415

    settings = Settings.from_env()
    _check_store(settings)
    app = make_celery(settings)
    if not is_embedded(app):
        app.worker_main(["worker", "--loglevel=INFO", *argv])
        return 0
    if argv:
        raise UnavailableError("worker options need PROVLEDGER_REDIS_URL; without it the worker runs embedded")
    worker = EmbeddedWorker(app, beat=True)
    worker.start()
    print(
        "provledger: no PROVLEDGER_REDIS_URL: running the periodic duties embedded in this process (Ctrl-C stops)",
        file=sys.stderr,
    )
    try:
        worker.join()
    finally:
        worker.stop()
    return 0


def _check_store(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        setup.check_initialised(engine)
    finally:
        engine.dispose()


def progress_bar(stream: TextIO | None = None, width: int = 30) -> Callable[[int, int], None]:
    """A one-line progress bar for ``progress(done, total)`` callbacks (on stderr by default)."""

    def show(done: int, total: int) -> None:
        out = stream or sys.stderr
        fraction = done / total if total else 1.0
        filled = int(width * fraction)
        end = "\n" if done >= total else ""
        out.write(f"\raudit [{'#' * filled}{'-' * (width - filled)}] {fraction:6.1%}  {done}/{total} entries{end}")
        out.flush()

    return show


def audit_with_workers(
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    *,
    shard_level: int | None = None,
    timeout: float | None = None,
) -> shards.DistributedReport:
    """Run a full audit on the Celery workers and wait for its report.

    With Redis, the running workers do it (and this fails with UnavailableError if Redis is
    down). Without Redis, an embedded worker in this process does, through the same tasks.
    """
    from workers.app import is_embedded, make_celery  # noqa: PLC0415 - composition root
    from workers.dispatch import check_broker, close, enqueue_audit  # noqa: PLC0415
    from workers.embedded import EmbeddedWorker  # noqa: PLC0415

    log = load_log_identity(settings)
    engine = make_engine(settings.database_url)
    worker: EmbeddedWorker | None = None
    app = make_celery(settings)
    try:
        setup.check_initialised(engine)
        sessions = make_session_factory(engine)
        if is_embedded(app):
            worker = EmbeddedWorker(app)
            worker.start()
        else:
            check_broker(app)
        with sessions() as session, session.begin():
            run = shards.create_audit(session, log, now=int(time.time()), source="cli", shard_level=shard_level)
            audit_id = run.id
        enqueue_audit(app, sessions, audit_id)  # after the commit
        return _wait(sessions, audit_id, progress, timeout)
    finally:
        if worker is not None:
            worker.stop()
        close(app)
        engine.dispose()


def _wait(
    sessions: Callable[[], Session],
    audit_id: int,
    progress: Callable[[int, int], None] | None,
    timeout: float | None,
) -> shards.DistributedReport:
    started = time.monotonic()
    hinted = False
    last = -1
    while True:
        with sessions() as session:
            run = shards.get_audit(session, audit_id)
            state, result, error = run.state, run.result, run.error
            level, size = run.shard_level, run.tree_size
            done = shards.audit_progress(session, audit_id)["entries_done"]
        if progress is not None and done != last:
            progress(done, size)
            last = done
        if state == shards.STATE_DONE and result:
            stored = json.loads(result)
            return shards.DistributedReport.from_json(stored["report"], stored["checked"], shards.plan_shards(size, level))
        if state == shards.STATE_FAILED:
            raise UnavailableError(f"audit {audit_id} could not complete: {error}")
        waited = time.monotonic() - started
        if timeout is not None and waited > timeout:
            raise UnavailableError(f"audit {audit_id} did not finish within {timeout:g} seconds")
        if not hinted and state == shards.STATE_QUEUED and waited > IDLE_HINT_SECONDS:
            print(
                f"provledger: audit {audit_id} is queued but no worker has started it: is `provledger worker` running?",
                file=sys.stderr,
            )
            hinted = True
        time.sleep(POLL_SECONDS)



