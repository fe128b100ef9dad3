"""``provledger worker`` and ``provledger audit --workers``: the command line's side of issue 4.

The composition root may import ``workers`` (lazily, inside these functions); nothing else in
``ledger`` does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from sqlalchemy.orm import Session

from ledger.cli.args import signed_index
from ledger.config import MAX_PROCESSES, Settings
from ledger.db.engine import begin_write, make_engine, make_session_factory
from ledger.errors import ConfigurationError, MalformedError, UnavailableError
from ledger.services import setup, shards
from ledger.services.log import load_log_identity

__all__ = [
    "DEFAULT_WAIT",
    "EMBEDDED_OPTIONS",
    "audit_with_workers",
    "celery_worker_help",
    "progress_bar",
    "run_worker",
]

#: How often the command line looks at the audit's progress.
POLL_SECONDS = 0.5
#: ``audit --workers`` gives up (exit 3, nothing recorded) when no worker has picked the audit
#: up within this many seconds, unless ``--wait`` says otherwise.
DEFAULT_WAIT = 30.0
#: After this long with the audit still queued, say what it is waiting for.
WAITING_HINT_SECONDS = 2.0
#: The worker options that also apply without Redis (the embedded worker in this process).
EMBEDDED_OPTIONS = "-c/--concurrency N, -B/--beat, -l/--loglevel LEVEL"


def celery_worker_help() -> str:
    """Celery's own worker options, as ``celery worker --help`` lists them."""
    from workers.app import worker_options_help  # noqa: PLC0415 - composition root

    return worker_options_help("provledger worker")


def _embedded_options(argv: Sequence[str]) -> tuple[int | None, str]:
    """The worker options that make sense without Redis; anything else is refused."""
    import argparse  # noqa: PLC0415

    class _Refuse(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            if not message.startswith("unrecognized arguments"):
                raise MalformedError(f"provledger worker: {message}")
            raise ConfigurationError(
                f"without PROVLEDGER_REDIS_URL the worker runs embedded in this process and takes only "
                f"{EMBEDDED_OPTIONS} ({message}); set PROVLEDGER_REDIS_URL for the other Celery options"
            )

    parser = _Refuse(prog="provledger worker", add_help=False, allow_abbrev=False)
    parser.add_argument("-c", "--concurrency", type=signed_index)
    parser.add_argument("-B", "--beat", action="store_true")
    parser.add_argument("-l", "--loglevel", default="WARNING", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL"])
    args = parser.parse_args(list(argv))
    if args.concurrency is not None and not 1 <= args.concurrency <= MAX_PROCESSES:
        parser.error(f"--concurrency must be from 1 to {MAX_PROCESSES}, got {args.concurrency}")
    return args.concurrency, args.loglevel


def run_worker(argv: Sequence[str]) -> int:
    """``provledger worker [CELERY WORKER OPTIONS…]``: a Celery worker for this ledger.

    With Redis: Celery's ``worker`` command on the ``workers`` app, every option handed to it
    unchanged (``--concurrency 2``, ``--beat``, ``-Q``, ``--loglevel``, …), as
    ``celery -A workers worker`` would take them. Without Redis there is no queue to share, so
    the worker runs the periodic duties (checkpoints, scheduled audits) in this process until
    interrupted, and takes only the options that mean something there (``EMBEDDED_OPTIONS``).
    """
    from workers.app import is_embedded, make_celery  # noqa: PLC0415 - composition root
    from workers.embedded import EmbeddedWorker  # noqa: PLC0415

    settings = Settings.from_env()
    _check_store(settings)
    app = make_celery(settings)
    if not is_embedded(app):
        # Celery's click command: a default log level first, so that the operator's wins.
        code = app.worker_main(["worker", "--loglevel=INFO", *argv])
        return int(code or 0)
    concurrency, loglevel = _embedded_options(argv)
    worker = EmbeddedWorker(app, concurrency=concurrency, beat=True, loglevel=loglevel)
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


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def progress_bar(
    stream: TextIO | None = None, width: int = 30, *, clock: Callable[[], float] = time.monotonic
) -> Callable[[int, int], None]:
    """A one-line progress bar with an ETA for ``progress(done, total)`` callbacks (stderr by default).

    The ETA is the remaining entries at the rate measured since the first call."""
    first: list[tuple[float, int]] = []

    def show(done: int, total: int) -> None:
        out = stream or sys.stderr
        now = clock()
        if not first:
            first.append((now, done))
        (t0, d0) = first[0]
        fraction = done / total if total else 1.0
        filled = int(width * fraction)
        if done >= total:
            eta, end = f"  took {_duration(now - t0)}", "\n"
        elif done > d0 and now > t0:
            eta, end = f"  ETA {_duration((total - done) * (now - t0) / (done - d0))}", ""
        else:
            eta, end = "  ETA …", ""
        out.write(f"\raudit [{'#' * filled}{'-' * (width - filled)}] {fraction:6.1%}  {done}/{total} entries{eta}\x1b[K{end}")
        out.flush()

    return show


def audit_with_workers(
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    *,
    shard_level: int | None = None,
    timeout: float | None = None,
    wait: float = DEFAULT_WAIT,
    notice: TextIO | None = None,
) -> shards.DistributedReport:
    """Run a full audit on the Celery workers and wait for its report.

    With Redis, the running workers do it (and this fails with UnavailableError if Redis is
    down). Without Redis, an embedded worker in this process does, through the same tasks.
    If no worker has picked the audit up within ``wait`` seconds, the audit is withdrawn (its
    records deleted, so nothing half-written stays behind) and UnavailableError (exit 3) says
    how to start a worker. ``timeout`` bounds the whole run (None: as long as it progresses).
    """
    if not wait > 0 or wait != wait or wait == float("inf"):
        raise MalformedError(f"--wait must be a positive number of seconds, got {wait}")
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
            begin_write(session)
            run = shards.create_audit(session, log, now=int(time.time()), source="cli", shard_level=shard_level)
            audit_id = run.id
        enqueue_audit(app, sessions, audit_id)  # after the commit
        return _wait(sessions, audit_id, progress, timeout=timeout, wait=wait, notice=notice or sys.stderr)
    finally:
        if worker is not None:
            worker.stop()
        close(app)
        engine.dispose()


def _wait(
    sessions: Callable[[], Session],
    audit_id: int,
    progress: Callable[[int, int], None] | None,
    *,
    timeout: float | None,
    wait: float,
    notice: TextIO,
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
        if progress is not None and state != shards.STATE_QUEUED and done != last:
            progress(done, size)
            last = done
        if state == shards.STATE_DONE and result:
            stored = json.loads(result)
            return shards.DistributedReport.from_json(stored["report"], stored["checked"], shards.plan_shards(size, level))
        if state == shards.STATE_FAILED:
            raise UnavailableError(f"audit {audit_id} could not complete: {error}")
        waited = time.monotonic() - started
        if state == shards.STATE_QUEUED:
            if waited > wait and shards.withdraw_audit(sessions, audit_id):
                raise UnavailableError(
                    f"no worker picked up the audit within {wait:g} seconds, so it was withdrawn: start one with "
                    "`provledger worker` (same PROVLEDGER_DATABASE_URL and PROVLEDGER_REDIS_URL), or wait longer with --wait"
                )
            if not hinted and waited > WAITING_HINT_SECONDS:
                print(f"provledger: audit {audit_id} is queued; waiting up to {wait:g} seconds for a worker to pick it up",
                      file=notice, flush=True)
                hinted = True
        if timeout is not None and waited > timeout:
            raise UnavailableError(f"audit {audit_id} did not finish within {timeout:g} seconds")
        time.sleep(POLL_SECONDS)
