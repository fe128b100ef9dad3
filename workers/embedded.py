"""The embedded mode: a real Celery worker on a thread of the current process.

With no ``PROVLEDGER_REDIS_URL`` the app uses Celery's in-memory transport and result store
(``workers.app``). Tasks are still published as JSON messages, consumed by a Celery worker and
acknowledged late, exactly as on Redis — only the transport differs. We chose this over
``task_always_eager``, which calls the task function in place: eager mode skips serialisation,
acknowledgement and the chord machinery, so it would be a second code path in disguise.

The worker uses the ``threads`` pool: signature checks (libsodium through cffi) release the GIL,
so a few threads do overlap. For periodic duties the beat scheduler runs on another thread.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import WorkController
from celery.worker import state as worker_state

from ledger.errors import UnavailableError
from workers.app import is_embedded

__all__ = ["EmbeddedWorker", "default_concurrency"]

#: How long start() waits for the worker to be consuming.
START_TIMEOUT = 30.0


def default_concurrency() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _Controller(WorkController):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self.ready.set()


class EmbeddedWorker:
    """Start with :meth:`start`; stop with :meth:`stop` (or let the process end: daemon threads)."""

    def __init__(
        self, app: Celery, *, concurrency: int | None = None, beat: bool = False, loglevel: str = "WARNING"
    ) -> None:
        if not is_embedded(app):
            raise ValueError("an embedded worker needs the in-memory transport (no PROVLEDGER_REDIS_URL)")
        self.app = app
        self.concurrency = concurrency or default_concurrency()
        self.beat = beat
        self.loglevel = loglevel
        self._controller: _Controller | None = None
        self._thread: threading.Thread | None = None
        self._beat: Any = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self.app.loader.import_default_modules()
        # The threads pool runs tasks on threads that resolve the app through Celery's default
        # app (as Celery's own embedded test worker does): make it this one.
        self.app.set_current()
        self.app.set_default()
        self._controller = _Controller(
            app=self.app,
            concurrency=self.concurrency,
            pool_cls="threads",
            hostname=f"embedded-{os.getpid()}@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=self.loglevel,
        )
        self._thread = threading.Thread(target=self._controller.start, name="provledger-embedded-worker", daemon=True)
        self._thread.start()
        if not self._controller.ready.wait(START_TIMEOUT):
            raise UnavailableError("the embedded worker did not start")
        if self.beat:
            self._beat = EmbeddedService(self.app, thread=True)
            self._beat.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._beat is not None:
            self._beat.stop()
            self._beat = None
        thread, self._thread = self._thread, None
        if thread is None:
            return
        # The worker's loop checks this flag between polls (the way Celery's own test worker stops).
        worker_state.should_terminate = 0
        thread.join(timeout)
        worker_state.should_terminate = None

    def join(self) -> None:
        """Block until the worker stops (the foreground ``provledger worker`` without Redis)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(1.0)
