"""The Sigstore bundle vectors (../shared/vectors/provenance) as test cases, and a fixed ``now``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import vectors_root

#: When expected.json was checked; every vector's times are before it.
NOW = datetime(2026, 11, 26, tzinfo=UTC)

PROVENANCE = "provenance"
PUBLIC_GOOD = "sigstore-trust/public-good.trusted_root.json"
STAGING = "sigstore-trust/staging.trusted_root.json"


@dataclass(frozen=True)
class Case:
    """One bundle vector: its files (relative to vectors/provenance) and what it must give."""

    bundle: str
    trusted_root: str
    expect: str
    artifact: str | None = None
    public_key: str | None = None
    sample: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        parts = self.bundle.split("/")
        return parts[-2] if parts[-1] == "bundle.sigstore.json" else parts[-1]


def provenance_dir() -> Path:
    return vectors_root() / PROVENANCE


def expected_samples() -> list[dict[str, Any]]:
    path = provenance_dir() / "expected.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["samples"]


def bundle_cases() -> list[Case]:
    """Every bundle case of expected.json, with its stated result ("pass ..." or "fail")."""
    return [
        Case(
            bundle=s["bundle"],
            trusted_root=s["trusted_root"],
            expect="pass" if s["expect"].startswith("pass") else "fail",
            artifact=s.get("artifact"),
            public_key=s.get("public_key"),
            sample=s,
        )
        for s in expected_samples()
        if "bundle" in s
    ]


#: Bundles in the vectors folder that expected.json does not list; both are real and valid.
EXTRA_CASES = [
    Case(
        "sigstore-bundles/conformance/happy-path-v0.3/bundle.sigstore.json",
        PUBLIC_GOOD,
        "pass",
        artifact="sigstore-bundles/conformance/a.txt",
    ),
    Case(
        "sigstore-bundles/sigstore-python/bundle_v3_github.whl.sigstore",
        PUBLIC_GOOD,
        "pass",
        artifact="sigstore-bundles/sigstore-python/bundle_v3_github.whl",
    ),
]
