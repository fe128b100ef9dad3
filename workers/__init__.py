"""Celery worker layer."""
