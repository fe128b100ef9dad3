"""The witness tests' shared vectors (../shared/vectors/notes)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_vector


@pytest.fixture(scope="session")
def notes() -> dict[str, Any]:
    return load_vector("notes/signed_note_checkpoint_cosignature_vectors.json")


@pytest.fixture(scope="session")
def monkeys(notes: dict[str, Any]) -> dict[str, Any]:
    (case,) = [c for c in notes["witness_add_checkpoint"] if c["id"] == "witness-monkeys-5-to-8"]
    return case


@pytest.fixture(scope="session")
def cosig_vector(notes: dict[str, Any]) -> dict[str, Any]:
    (case,) = [c for c in notes["cosignature_v1"] if c["id"] == "derived-witness-testkey-cosig"]
    return case
