"""Fixtures for the auditor UI tests: a seeded store and the app with the UI registered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests.ui.ui_seed import Seeded, seed
from web.app import create_app
from web.ui import init_app


def make_app(store: Any, **config: Any) -> Flask:
    app = create_app({"SETTINGS": store.settings, "SECRET_KEY": "test-secret-" + "x" * 32, **config})
    init_app(app)  # a no-op: web.app registers the UI itself
    return app


def close_app(app: Flask) -> None:
    ext = app.extensions["provledger"]
    ext.sequencer.stop()
    ext.engine.dispose()


@pytest.fixture
def seeded(sqlite_store: Any) -> Seeded:
    return seed(sqlite_store)


@pytest.fixture
def app(seeded: Seeded) -> Iterator[Flask]:
    app = make_app(seeded.store, TESTING=True)
    yield app
    close_app(app)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()
