"""What tasks share within one worker process: database sessions and the Redis lock.

Engines are made lazily per process (a prefork child must not reuse its parent's connections)
and per database URL.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from celery import Celery
from sqlalchemy.orm import Session

from ledger.db.engine import make_engine, make_session_factory
from workers.app import is_embedded, redis_prefix, settings_of

__all__ = ["redis_client", "redis_lock", "sessions_for"]

_lock = threading.Lock()
_factories: dict[tuple[int, str], Callable[[], Session]] = {}

# Delete the lock only if it is still ours (it may have expired and been taken by another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def sessions_for(app: Celery) -> Callable[[], Session]:
    """A session factory for the app's database, made once per process."""
    url = settings_of(app).database_url
    key = (os.getpid(), url)
    with _lock:
        factory = _factories.get(key)
        if factory is None:
            factory = make_session_factory(make_engine(url))
            _factories[key] = factory
    return factory


def redis_client(app: Celery) -> redis.Redis:
    url = settings_of(app).redis_url
    assert url, "no Redis in the embedded mode"
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)


@contextmanager
def redis_lock(app: Celery, name: str, ttl_ms: int) -> Iterator[bool]:
    """An atomic Redis lock (SET NX PX); yields whether it is held. Embedded mode: always True
    (the database-level guard inside is what keeps it correct there)."""
    if is_embedded(app):
        yield True
        return
    client = redis_client(app)
    key = redis_prefix() + name
    token = uuid.uuid4().hex
    try:
        held = bool(client.set(key, token, nx=True, px=ttl_ms))
        try:
            yield held
        finally:
            if held:
                client.eval(_RELEASE, 1, key, token)
    finally:
        client.close()
