"""What ``serve``'s worker processes share.

The admin-login throttle (web.throttle): failures recorded in one process hold back the client
in every other, a full table keeps the records that matter, and a real two-process ``serve``
throttles the client after five failures whichever process takes each connection. The /metrics counters
(web.counters): every scrape, whichever worker answers it, counts what all of them did. The
integrity flag (web.integrity_flag): a compromise one worker finds stops every worker."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import re
import time

import pytest
from sqlalchemy import text

from tests.fixtures import sign
from tests.web.test_serve_processes import _Serve, _submitter
from web.counters import SharedCounters
from web.extension import IntegrityState
from web.integrity_flag import SharedFlag
from web.throttle import RUN, SLOTS, SharedLoginThrottle


def _fail(throttle: SharedLoginThrottle, client: str, times: int, now: int) -> None:
    for _ in range(times):
        throttle.failed(client, now=now)


def test_failures_in_one_process_hold_the_client_back_in_another():
    throttle = SharedLoginThrottle(client_free=5, client_cap=900, global_free=50, global_cap=60, forget=3600)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_fail, args=(throttle, "198.51.100.9", 3, 1_000)) for _ in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=30)
        assert p.exitcode == 0
    # 6 failures in all, 5 free: this process (which recorded none) makes the client wait
    assert throttle.retry_after("198.51.100.9", now=1_000) == 2
    assert throttle.retry_after("198.51.100.10", now=1_000) == 0
    throttle.succeeded("198.51.100.9")
    assert throttle.retry_after("198.51.100.9", now=1_000) == 0


def test_a_full_table_keeps_the_across_all_clients_record_and_the_recent_failures():
    throttle = SharedLoginThrottle(client_free=5, client_cap=900, global_free=10**9, global_cap=60, forget=10**9)
    _fail(throttle, "attacker", 8, 5_000)  # the most recent failures
    for i in range(SLOTS * 2):  # twice as many other clients as slots, all of them older
        throttle.failed(f"client-{i}", now=1_000 + i % 1_000)
    # a full run gives up its oldest record: the attacker's, the newest, stays (RUN slots a client)
    assert RUN > 1 and throttle.retry_after("attacker", now=5_000) > 0
    assert throttle._load(throttle.GLOBAL).failures == 8 + SLOTS * 2  # noqa: SLF001 - the shared record itself


def test_a_two_process_serve_throttles_after_five_failures(sqlite_store):
    """Five failures spread over both workers are free; the sixth attempt, sent right after, is
    held back (429) whichever worker takes it: the wait is a full second of real time from the
    fifth failure (``LoginThrottle``), and the workers share one table."""
    server = _Serve(sqlite_store.env, "--workers", "2", "--threads", "2")
    try:
        server.wait_for_workers(2, settle=1.0)
        statuses: list[int] = []
        gap = 0.0  # from the fifth failure's answer to the sixth attempt's POST
        answered = 0.0
        for attempt in range(6):
            # a new connection each time: the balancer spreads them over both workers
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/login")
            page = conn.getresponse()
            cookie = page.getheader("Set-Cookie", "").split(";", 1)[0]
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)  # type: ignore[union-attr]
            if attempt == 5:
                gap = time.monotonic() - answered
            conn.request("POST", "/login", body=f"csrf_token={csrf}&token=plt_wrong",
                         headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            reply = conn.getresponse()
            reply.read()
            answered = time.monotonic()
            statuses.append(reply.status)
            conn.close()
    finally:
        server.stop()
    if gap >= 1.0:  # a host so loaded that the wait had passed: nothing to tell from the sixth
        pytest.skip(f"the sixth attempt came {gap:.2f} s after the fifth failure, past the 1 s wait")
    assert statuses == [403] * 5 + [429], (statuses, gap)


def _hold_and_die(throttle: SharedLoginThrottle) -> None:
    throttle._lock._lock.acquire()  # noqa: SLF001 - a worker killed while it holds the lock
    import os  # noqa: PLC0415

    os._exit(0)


def test_a_worker_that_died_holding_the_lock_does_not_stop_logins():
    throttle = SharedLoginThrottle()
    dead = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(throttle,))
    dead.start()
    dead.join(timeout=30)
    started = time.monotonic()
    throttle.failed("203.0.113.5", now=1_000)
    assert throttle.retry_after("203.0.113.5", now=1_000) == 0
    assert time.monotonic() - started < 10  # a bounded wait per call, not forever


def _count(counters: SharedCounters, worker: int, n: int) -> None:
    counters.bind(worker)
    for _ in range(n):
        counters.add("entries_created")
    counters.add("batches", 2)


def test_shared_counters_add_up_over_the_workers():
    counters = SharedCounters(3)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_count, args=(counters, w, 100 * (w + 1))) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert counters.total("entries_created") == 600 and counters.total("batches") == 6
    assert counters.total("entries_refused") == 0
    with pytest.raises(RuntimeError):
        counters.add("entries_created")  # this process is no worker: it must not write a row


def _scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_every_scrape_of_a_two_process_serve_counts_all_of_its_work(sqlite_store):
    st = sqlite_store
    key, token = _submitter(st)
    server = _Serve(st.env, "--workers", "2", "--threads", "2")
    try:
        server.wait_for_workers(2, settle=1.0)
        for _ in range(8):  # a connection each: the balancer spreads them over both workers
            status, body = server.post(json.dumps(sign(key)).encode(), token)
            assert status == 201, body
        scrapes = [_scrape(server.port) for _ in range(6)]  # answered by both workers
    finally:
        server.stop()
    for scrape in scrapes:
        assert 'provledger_entries_total{outcome="created"} 8\n' in scrape, scrape
        batches = int(re.search(r"^provledger_batches_total (\d+)$", scrape, re.M).group(1))  # type: ignore[union-attr]
        assert 1 <= batches <= 8


def _flag(flag: SharedFlag) -> None:
    flag.set({"first_bad_index": 7, "message": "entry 7 was altered"})


def test_a_flag_set_in_one_process_is_read_in_another_and_the_first_report_wins():
    state = IntegrityState(shared=SharedFlag())
    child = multiprocessing.get_context("fork").Process(target=_flag, args=(state.shared,))
    child.start()
    child.join(timeout=30)
    assert state.compromised is None and state.report() == {"first_bad_index": 7, "message": "entry 7 was altered"}
    state.flag({"first_bad_index": 3, "message": "later"})
    assert state.report()["first_bad_index"] == 7 and state.shared.read()["first_bad_index"] == 7  # type: ignore[union-attr,index]
    huge = SharedFlag()
    huge.set({"first_bad_index": 1, "message": "m", "problems": ["x" * 1000] * 100})
    assert huge.read() == {"first_bad_index": 1, "message": "m", "truncated": True}


def test_a_compromise_one_worker_finds_stops_every_worker(sqlite_store):
    """The store is cut behind the server's back; the worker that next writes finds it. Every
    /healthz and every write after that, whichever worker takes it, reports it (503)."""
    from tests.services.test_tamper import delete_entry_rows  # noqa: PLC0415

    st = sqlite_store
    key, token = _submitter(st)
    server = _Serve(st.env, "--workers", "2", "--threads", "2")
    try:
        server.wait_for_workers(2, settle=1.0)
        for _ in range(4):  # both workers write, and hold the right edge they wrote
            assert server.post(json.dumps(sign(key)).encode(), token)[0] == 201
        size = st.size()
        with st.tamper() as conn:
            delete_entry_rows(conn, size - 1)
        status, body = server.post(json.dumps(sign(key)).encode(), token)
        assert status == 503 and body["error"]["code"] == "integrity_failure", body
        health = []
        for _ in range(6):  # new connections: both workers answer
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/healthz")
            reply = conn.getresponse()
            health.append((reply.status, json.loads(reply.read()).get("status")))
            conn.close()
        writes = [server.post(json.dumps(sign(key)).encode(), token)[0] for _ in range(4)]
    finally:
        server.stop()
    assert health == [(503, "compromised")] * 6, health
    assert writes == [503] * 4
    with st.sessions() as session:  # nothing was appended over the gap
        assert session.execute(text("SELECT count(*) FROM entries WHERE idx >= :k"), {"k": size - 1}).scalar_one() == 0
