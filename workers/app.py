"""The Celery app, built from the same configuration as the web app (``ledger.config.Settings``).

With ``PROVLEDGER_REDIS_URL`` set, Redis is the broker and the result backend. Without it, the
app uses Celery's in-memory transport and result store: the same tasks then run on a worker
thread inside the process that enqueues them (``workers.embedded``), with no server at all, and
their messages still go through the JSON serialiser.

Besides the ledger's own settings, two optional variables tune the Redis deployment:

``PROVLEDGER_REDIS_PREFIX``
    prefix of every Redis key this app writes (broker, results, locks); default ``provledger:``.
    Two ledgers, or two test runs, can share one Redis under different prefixes.
``PROVLEDGER_CELERY_VISIBILITY_TIMEOUT``
    seconds after which Redis hands an unacknowledged task (its worker died) to another worker;
    default 3600. It must exceed the longest shard and the longest retry delay
    (``MAX_RETRY_DELAY``), or a task still running would be delivered twice (harmless, the tasks
    are idempotent, but wasted).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from celery import Celery

from ledger.config import Settings, env_int

__all__ = [
    "AUDIT_EVERY",
    "CHECKPOINT_EVERY",
    "DEFAULT_PREFIX",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "QUEUE",
    "is_embedded",
    "make_celery",
    "redis_prefix",
    "settings_of",
    "worker_options_help",
]

QUEUE = "provledger"
DEFAULT_PREFIX = "provledger:"
DEFAULT_VISIBILITY_TIMEOUT = 3600
#: Transient failures (database or Redis unreachable) are retried this many times, with
#: exponential backoff capped at MAX_RETRY_DELAY seconds; anything else fails at once.
MAX_RETRIES = 5
MAX_RETRY_DELAY = 60
#: Beat schedule: publish a checkpoint if the tree grew; re-run the whole audit.
CHECKPOINT_EVERY = timedelta(minutes=1)
AUDIT_EVERY = timedelta(hours=24)
#: re-judge deployments when the trust state moved (a no-op otherwise)
REEVALUATE_EVERY = timedelta(minutes=5)


def redis_prefix(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("PROVLEDGER_REDIS_PREFIX", DEFAULT_PREFIX)


def _visibility_timeout(environ: dict[str, str] | None = None) -> int:
    return env_int("PROVLEDGER_CELERY_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT, 1, 30 * 86400, environ)


def make_celery(settings: Settings | None = None, environ: dict[str, str] | None = None, **overrides: Any) -> Celery:
    """A Celery app for this ledger. ``overrides`` are Celery settings (tests, bench)."""
    settings = settings or Settings.from_env(environ)
    app = Celery("provledger", set_as_current=False)
    conf: dict[str, Any] = {
        # JSON only: a task's arguments are ids and ranges, its result a short summary.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A task is acknowledged when it is done, and given back if its worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": QUEUE,
        "task_default_exchange": QUEUE,
        "task_default_routing_key": QUEUE,
        "result_expires": timedelta(days=1),
        "timezone": "UTC",
        "enable_utc": True,
        "include": ["workers.tasks"],
        "beat_schedule": {
            "publish-checkpoint": {"task": "provledger.publish_checkpoint", "schedule": CHECKPOINT_EVERY},
            "scheduled-audit": {"task": "provledger.scheduled_audit", "schedule": AUDIT_EVERY},
            "reevaluate-verdicts": {"task": "provledger.reevaluate_chain_verdicts", "schedule": REEVALUATE_EVERY},
        },
        "beat_schedule_filename": str(settings.home / "celerybeat-schedule"),
        "worker_hijack_root_logger": False,
    }
    if settings.redis_url:
        prefix = redis_prefix(environ)
        vt = _visibility_timeout(environ)
        conf.update(
            broker_url=settings.redis_url,
            result_backend=settings.redis_url,
            broker_transport_options={
                "visibility_timeout": vt,
                "global_keyprefix": prefix,
                # look for abandoned tasks often enough for the visibility timeout to matter
                "unacked_restore_interval": max(1, min(10, vt // 4)),
                "unacked_restore_throttle": 1,
                "socket_connect_timeout": 5,
                "health_check_interval": 25,
            },
            result_backend_transport_options={"global_keyprefix": prefix, "visibility_timeout": vt},
            redis_socket_connect_timeout=5,
            # Workers wait for Redis as long as it takes; an enqueuer gives up fast (→ 503).
            broker_connection_retry_on_startup=True,
            broker_connection_max_retries=None,
            broker_connection_timeout=3,
            task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
            # A task that loses its broker connection is stopped; it was never acknowledged, so
            # Redis hands it out again once it is back.
            worker_cancel_long_running_tasks_on_connection_loss=True,
        )
    else:
        conf.update(
            broker_url="memory://localhost/",
            result_backend="cache+memory://",
            broker_transport_options={"polling_interval": 0.05},
            broker_connection_retry_on_startup=True,
            worker_cancel_long_running_tasks_on_connection_loss=True,
        )
    conf.update(overrides)
    app.conf.update(conf)
    app.provledger_settings = settings  # type: ignore[attr-defined]
    return app


def settings_of(app: Celery) -> Settings:
    """The ledger settings an app was built from."""
    settings = getattr(app, "provledger_settings", None)
    return settings if isinstance(settings, Settings) else Settings.from_env()


def is_embedded(app: Celery) -> bool:
    """True when the app runs without a broker server (the in-memory transport)."""
    return str(app.conf.broker_url).startswith("memory://")


def worker_options_help(prog: str) -> str:
    """The options of Celery's ``worker`` command (from its click command), for ``prog --help``."""
    import click  # noqa: PLC0415 - only for --help
    from celery.bin.worker import worker  # noqa: PLC0415

    text = worker.get_help(click.Context(worker, info_name=prog))
    at = text.find("Worker Options:")
    return text[at:] if at >= 0 else text
