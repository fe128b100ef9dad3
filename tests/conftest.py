"""Shared fixtures: where the public vectors live, and whether missing services may skip.

Tests read ../shared/vectors (override with PROVLEDGER_VECTORS). Where a vector folder or a
service is missing they skip with a reason, except under PROVLEDGER_REQUIRE_SERVICES=1 (CI),
where the same absence fails the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("PROVLEDGER_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; under PROVLEDGER_REQUIRE_SERVICES=1 fail instead."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (PROVLEDGER_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(reason)


def vectors_root() -> Path:
    return Path(os.environ.get("PROVLEDGER_VECTORS", REPO.parent / "shared" / "vectors"))


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    root = vectors_root()
    if not root.is_dir():
        skip_or_fail(f"public vectors not found at {root} (set PROVLEDGER_VECTORS)")
    return root


def load_vector(relative: str) -> Any:
    """Load one JSON vector file (skipping, or failing in CI, when it is absent)."""
    path = vectors_root() / relative
    if not path.is_file():
        skip_or_fail(f"vector file {path} not found (set PROVLEDGER_VECTORS)")
    return json.loads(path.read_text(encoding="utf-8"))


# Store fixtures (``store`` on SQLite and PostgreSQL, ``sqlite_store``, ``postgres_databases``)
# for tests/db, tests/services, tests/cli and tests/web; helpers live in tests/fixtures.py.
from tests.fixtures import *  # noqa: E402, F403
