"""Celery workers: the ledger's verification core at scale, and its periodic duties.

``celery -A workers worker`` finds ``app`` here, built from the environment like the web app;
``provledger worker`` starts the same worker. Tasks live in ``workers.tasks`` and are thin: they
take ids and ranges and call ``ledger.services``.
"""

from __future__ import annotations

from workers.app import make_celery

__all__ = ["app", "make_celery"]

app = make_celery()
