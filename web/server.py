"""``provledger serve``: check the store, then run the app under waitress.

The server refuses to start (exit 1, naming the first bad index) when the store fails its
integrity check. Large ledgers start on a fast check and are re-measured in the background; a
failure then stops writes (503) and shows on /healthz.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from ledger.config import MAX_PROCESSES, MAX_THREADS, Settings, env_int
from ledger.db.engine import make_engine, make_session_factory
from ledger.errors import ConfigurationError, IntegrityError
from ledger.interop.sigstore.trust import ENV_TRUSTED_ROOTS
from ledger.services import audit, browse, bundles, deployment, integrity, setup
from ledger.services.log import LogIdentity, load_log_identity
from web.app import MAX_REQUEST_BYTES, create_app
from web.balance import Balancer
from web.counters import SharedCounters
from web.extension import IntegrityState
from web.integrity_flag import SharedFlag
from web.throttle import SharedLoginThrottle

__all__ = ["access_log", "check_at_start", "default_workers", "pace_batches", "serve", "server_options"]

log = logging.getLogger(__name__)


def default_workers() -> int:
    """``serve``'s worker processes by default: one per core, at most ``MAX_PROCESSES`` (the
    most ``--workers`` takes), so a machine with more cores still starts."""
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


#: ``PROVLEDGER_PACE_BATCHES``: whether batches pace themselves by their process's sequencer
#: (``ledger.services.sequencer.Sequencer.pace``); ``auto`` means with several processes only
PACE_SETTINGS = ("auto", "on", "off")


def pace_batches(workers: int, environ: Mapping[str, str] | None = None) -> bool:
    """``PROVLEDGER_PACE_BATCHES`` for ``workers`` processes: ``auto`` (the default) paces with
    several processes (while one sequences, the others' preparers have the other cores; with one,
    nothing would), ``on`` or ``off`` force it. ConfigurationError for anything else."""
    raw = (os.environ if environ is None else environ).get("PROVLEDGER_PACE_BATCHES", "").strip() or "auto"
    if raw not in PACE_SETTINGS:
        raise ConfigurationError(f"PROVLEDGER_PACE_BATCHES must be one of {', '.join(PACE_SETTINGS)}, not {raw[:40]!r}")
    return workers > 1 if raw == "auto" else raw == "on"


def check_trust_anchors() -> None:
    """The trust anchors the environment names must load before serving: a Sigstore trusted root
    that cannot be read or parsed, or a TEE trust folder that is no folder or holds something that
    is no certificate, would otherwise refuse every bundle or TPM deployment later, one request at
    a time. Raises ConfigurationError naming the file. (Loaded here, before the workers fork, the
    Sigstore roots are in every worker's cache.)"""
    if os.environ.get(ENV_TRUSTED_ROOTS):
        bundles.trusted_roots()
    deployment.load_tpm_roots(deployment.trust_dir())


def check_at_start(settings: Settings) -> tuple[IntegrityState, bool]:
    """Run the start-up check. Returns the state and whether a background audit is needed.

    Raises IntegrityError when the store must not be served, ConfigurationError when a trust
    anchor it names does not load (``check_trust_anchors``).
    """
    check_trust_anchors()
    identity = load_log_identity(settings)
    engine = make_engine(settings.database_url)
    try:
        setup.check_initialised(engine)
        with make_session_factory(engine)() as session:
            size = browse.tree_size(session)
            if size <= integrity.full_check_limit():
                # before serving starts: no other thread yet, so the audit may fork (every core)
                report = audit.audit(session, identity, workers=os.cpu_count() or 1)
                if not report.ok:
                    first = next(p for p in report.problems if p.index == report.first_bad_index) if report.first_bad_index is not None else report.problems[0]
                    raise IntegrityError(
                        f"the store failed its integrity check at index {report.first_bad_index}: {first.message}",
                        first_bad_index=report.first_bad_index,
                    )
                return IntegrityState(checked=f"full audit of {size} entries at start-up"), False
            integrity.fast_check(session, identity)
            state = IntegrityState(checked=f"fast check at start-up; full audit of {size} entries running")
            state.background_audit_running = True
            return state, True
    finally:
        engine.dispose()


def start_background_audit(settings: Settings, identity: LogIdentity, state: IntegrityState) -> threading.Thread:
    def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            try:
                with make_session_factory(engine)() as session:
                    report = audit.audit(session, identity)
            except Exception as exc:  # noqa: BLE001 - an audit that could not finish verified nothing: say so
                log.exception("the background full audit could not finish")
                state.audit_error = f"{type(exc).__name__}: {exc}"
                state.checked = "fast check at start-up; the background full audit could not finish (run `provledger audit`)"
                return
            if not report.ok:
                log.error("background audit failed: first bad index %s", report.first_bad_index)
                state.flag(report.to_json())
            else:
                state.checked = f"full audit of {report.tree_size} entries (background)"
        finally:
            state.background_audit_running = False
            engine.dispose()

    thread = threading.Thread(target=run, name="provledger-audit", daemon=True)
    thread.start()
    return thread


#: A read that makes no progress for this long (headers or body) closes the connection.
DEFAULT_READ_TIMEOUT = 30
#: Open connections one serving process keeps (stalled ones included); then it stops accepting.
DEFAULT_MAX_CONNECTIONS = 1000
#: The collector's first threshold in a serving process (allocations between passes).
GC_THRESHOLD = 50_000


#: waitress's "Task queue depth" warning: at most one every this many seconds.
QUEUE_WARNING_SECONDS = 5.0


class EverySeconds(logging.Filter):
    """Let a logger's records through at most once every ``seconds`` (the rest are dropped)."""

    def __init__(self, seconds: float, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.seconds = seconds
        self._clock = clock
        self._next = float("-inf")
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.seconds
        return True


def server_options(threads: int, max_body: int) -> dict[str, Any]:
    """The waitress adjustments ``serve`` uses (see README, Production).

    waitress reads every request — headers and body — in its event loop and hands the app a
    complete request, so a slow or stalled client holds a socket, never an app thread or a
    database connection; a read that makes no progress for ``channel_timeout`` seconds ends it.
    """
    return {
        "threads": threads,
        "channel_timeout": env_int("PROVLEDGER_READ_TIMEOUT", DEFAULT_READ_TIMEOUT, 1, 3600),
        "cleanup_interval": 2,
        "connection_limit": env_int("PROVLEDGER_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 10, 100_000),
        "asyncore_use_poll": True,  # select() stops at 1024 descriptors
        "max_request_body_size": max_body,
        "backlog": 2048,
        "ident": "provledger",
        # proxy headers are judged by the app (web.proxy), against PROVLEDGER_TRUSTED_PROXIES
        "clear_untrusted_proxy_headers": False,
    }


def access_log(app: Any) -> Any:
    """A WSGI wrapper that logs one line per request (method, path, status, milliseconds)."""
    logger = logging.getLogger("provledger.access")

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        started = time.monotonic()
        status: list[str] = ["-"]

        def start(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info)

        try:
            return app(environ, start)
        finally:
            logger.info(
                "%s %s %s %s %.0fms", environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"), status[0], (time.monotonic() - started) * 1000,
            )

    return wrapped


def _serve_process(
    settings: Settings, state: IntegrityState, background: bool, sock: socket.socket, options: dict[str, Any],
    log_requests: bool = False, balance: tuple[Balancer, int] | None = None,
    shared: tuple[SharedLoginThrottle, SharedCounters] | None = None, pace: bool = False,
) -> int:
    import waitress  # noqa: PLC0415

    try:
        config: dict[str, Any] = {"SETTINGS": settings, "INTEGRITY": state, "PACE_BATCHES": pace}
        if shared is not None and balance is not None:
            throttle, counters = shared
            counters.bind(balance[1])
            config.update(LOGIN_THROTTLE=throttle, COUNTERS=counters)
        app = create_app(config)
    except ConfigurationError as exc:
        print(f"provledger: refusing to start: {exc}", file=sys.stderr, flush=True)
        return 1
    if background:
        start_background_audit(settings, app.extensions["provledger"].log, state)
    server = waitress.create_server(access_log(app) if log_requests else app, sockets=[sock], **options)
    # What the process holds now (modules, the app, its caches) lives as long as it does: leave it
    # out of the collector's passes, and pass less often (each request makes many short-lived objects).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    if balance is not None:
        balancer, worker = balance
        balancer.install(worker, server)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def serve(
    settings: Settings, *, host: str, port: int, workers: int | None = None, threads: int = 16, access_log: bool = False
) -> int:
    """Serve under waitress: ``workers`` processes (default: one per core) on one listening
    socket, each with ``threads`` threads and its own sequencer thread (they sequence through
    the database's lock). ``access_log``: a line per request (off by default: it costs throughput)."""
    if workers is None:
        workers = default_workers()
    if not (1 <= workers <= MAX_PROCESSES and 1 <= threads <= MAX_THREADS):
        print(f"provledger: --workers must be from 1 to {MAX_PROCESSES} and --threads from 1 to {MAX_THREADS:,}", file=sys.stderr)
        return 2
    try:
        pace = pace_batches(workers)  # a bad setting refuses before the start-up audit
        state, background = check_at_start(settings)
        options = server_options(threads, MAX_REQUEST_BYTES + 1024)
    except (IntegrityError, ConfigurationError) as exc:
        print(f"provledger: refusing to start: {exc}", file=sys.stderr)
        return 1
    print(f"provledger: integrity: {state.checked}", file=sys.stderr)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # waitress warns of its task queue's depth at every request queued behind busy threads: an
    # overloaded server would spend its time writing that. Once every few seconds says as much.
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, EverySeconds) for f in queue_log.filters):
        queue_log.addFilter(EverySeconds(QUEUE_WARNING_SECONDS))

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # an IPv6 address such as ::1
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        print(f"provledger: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bound = sock.getsockname()[1]
    print(
        f"provledger: serving {settings.origin} on http://{f'[{host}]' if ':' in host else host}:{bound}/ "
        f"(waitress, {workers} process(es) x {threads} threads, read timeout {options['channel_timeout']} s)",
        file=sys.stderr,
        flush=True,
    )
    if workers == 1:
        return _serve_process(settings, state, background, sock, options, access_log, pace=pace)
    # Several processes accept on the one listening socket; each runs its own sequencer, and
    # they serialise through the database's sequencer lock. The balancer spreads connections
    # evenly over them (web.balance).
    balancer = Balancer(workers)
    # one admin-login throttle for all of them (per process, N workers would allow N times the
    # tries) and one set of /metrics counters (a scrape reaches one worker)
    shared = (SharedLoginThrottle(), SharedCounters(workers))
    # and one integrity flag: a compromise one worker finds stops the writes of all of them
    state.shared = SharedFlag()

    def spawn(n: int) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            # a worker started again is forked after the supervisor took SIGTERM and SIGINT
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = 1
            try:
                # each its own audit and state
                code = _serve_process(settings, state, background, sock, options, access_log, (balancer, n), shared, pace)
            except BaseException:  # noqa: BLE001 - say why before the process ends
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        return pid

    return _supervise(spawn, workers, sock)


#: a worker that ends this soon after it started failed to start: the others would fail the same
#: way, so the server stops (exit 1) instead of starting it again and again
BOOT_SECONDS = 10.0


def _supervise(spawn: Callable[[int], int], workers: int, sock: socket.socket) -> int:
    """Start ``workers`` processes (``spawn(n)`` forks worker ``n``) and watch them until they
    end. A worker that ends while the server runs is reported on stderr and started again (it
    keeps the listening socket, which this process holds); one that ends within
    ``BOOT_SECONDS`` of its start stops the server. SIGTERM and SIGINT go to every worker."""
    live: dict[int, tuple[int, float]] = {}  # pid: (worker number, monotonic start)
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in list(live):
            try:
                os.kill(child, signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)
            except ProcessLookupError:
                pass

    for n in range(workers):
        live[spawn(n)] = (n, time.monotonic())
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    try:
        while live:
            for pid in list(live):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
                n, started = live.pop(pid)
                exit_code = os.waitstatus_to_exitcode(status)
                if stopping:
                    code = code or (exit_code if exit_code > 0 else 0)
                    continue
                how = f"with code {exit_code}" if exit_code >= 0 else f"on signal {-exit_code}"
                if time.monotonic() - started < BOOT_SECONDS:
                    print(f"provledger: worker {n} (pid {pid}) ended {how} as it started; stopping the server",
                          file=sys.stderr, flush=True)
                    code = 1
                    forward(signal.SIGTERM, None)
                    continue
                print(f"provledger: worker {n} (pid {pid}) ended {how}; starting it again", file=sys.stderr, flush=True)
                live[spawn(n)] = (n, time.monotonic())
            time.sleep(0.2)
    finally:
        sock.close()
    return code
