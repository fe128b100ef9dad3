"""Provenance records and the trust policy that judges them (pure: no database, no I/O).

- ``predicates``: record kinds, our predicate URIs and their JSON Schemas;
- ``graph``: the edges a record names (build inputs, part children, firmware hardware, SBOM
  components), by digest;
- ``policy``: signer keys, grants, thresholds and the trust state that key-event entries build;
- ``chain``: what a chain of trust is made of (``RecordInfo``, ``TeeInfo``, digests);
- ``fold``: the trust state as a fold over the log's entries (leaf facts, key-event ``prev``);
- ``judge``: one record under a trust state (the one time rule), with why it holds;
- ``verdict``: the chain verdict (a link is a digest held up by its best record).
"""

from __future__ import annotations

from ledger.trust.predicates import (
    CYCLONEDX,
    DEPLOYMENT,
    FIRMWARE_IMAGE,
    HARDWARE_PART,
    KEY_EVENT,
    SLSA_V02,
    SLSA_V1,
    SPDX,
    kind_of,
    validate_predicate,
)

__all__ = [
    "CYCLONEDX",
    "DEPLOYMENT",
    "FIRMWARE_IMAGE",
    "HARDWARE_PART",
    "KEY_EVENT",
    "SLSA_V02",
    "SLSA_V1",
    "SPDX",
    "kind_of",
    "validate_predicate",
]
