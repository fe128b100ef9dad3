"""Fixtures: real witnesses on free ports (stopped after the test) and a ledger that appends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cosign.helpers import Appender, Witnesses
from tests.fixtures import StoreHandle


@pytest.fixture
def witnesses(sqlite_store: StoreHandle, tmp_path: Path) -> Iterator[Witnesses]:
    pool = Witnesses(sqlite_store, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def appender(sqlite_store: StoreHandle) -> Appender:
    return Appender(sqlite_store)
