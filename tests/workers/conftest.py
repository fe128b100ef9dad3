"""Fixtures for the worker tests: a Redis namespace per test, and real `celery worker` processes.

Each test gets its own key prefix (``PROVLEDGER_REDIS_PREFIX``) in the Redis at
PROVLEDGER_TEST_REDIS_URL (default redis://127.0.0.1:6379/14), deleted afterwards, so runs never
see each other's queues, results or locks.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import skip_or_fail
from tests.fixtures import REPO, StoreHandle

REDIS_URL = os.environ.get("PROVLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
#: Short, so that a task abandoned by a killed worker is handed out again within the test.
VISIBILITY_TIMEOUT = 4


@dataclass
class RedisNamespace:
    url: str
    prefix: str
    client: redis.Redis

    def keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=self.prefix + "*", count=1000))


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so that a connection left open is reported by the test that
    left it (not by whichever test the garbage collector happens to run in)."""
    yield
    gc.collect()


@pytest.fixture
def redis_ns() -> Iterator[RedisNamespace]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        client.close()
        skip_or_fail(f"Redis is not reachable at {REDIS_URL} (set PROVLEDGER_TEST_REDIS_URL): {exc}")
    ns = RedisNamespace(REDIS_URL, f"provledger-test-{uuid.uuid4().hex[:12]}:", client)
    try:
        yield ns
    finally:
        keys = ns.keys()
        if keys:
            client.delete(*keys)
        client.close()


def worker_env(store: StoreHandle, ns: RedisNamespace) -> dict[str, str]:
    env = store.env
    env.update(
        PROVLEDGER_REDIS_URL=ns.url,
        PROVLEDGER_REDIS_PREFIX=ns.prefix,
        PROVLEDGER_CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
    )
    return env


@dataclass
class Workers:
    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *, concurrency: int = 1, beat: bool = False) -> subprocess.Popen[bytes]:
        name = f"w{len(self.procs)}-{uuid.uuid4().hex[:6]}@localhost"
        args = [
            sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel=INFO",
            f"--concurrency={concurrency}", "--pool=prefork", "-n", name,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        if beat:
            args.append("--beat")
        log = open(self.logs / f"{name.split('@')[0]}.log", "wb")  # noqa: SIM115 - closed with the process
        # its own session: a SIGKILL to the group takes the pool's children too, as a machine crash would
        proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def celery_workers(tmp_path: Path) -> Iterator[Workers]:
    logs = tmp_path / "worker-logs"
    logs.mkdir()
    workers = Workers(env={}, logs=logs)
    try:
        yield workers
    finally:
        workers.stop_all()
