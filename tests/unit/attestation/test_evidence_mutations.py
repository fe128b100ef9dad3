"""Seeded random mutations of every real TEE sample (bytes changed, cut, inserted, overwritten
with edge-case runs): each ends in an appraisal or a LedgerError, never another exception, and
a change to the signed part of a SEV-SNP report fails its signature check.

The same seed gives the same cases, so a failure names one that replays.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger.attestation import Policy, appraise
from ledger.errors import LedgerError
from tests.unit.attestation.test_attest_vectors import _ids, _read, _samples

pytestmark = pytest.mark.vectors

CASES = 300
#: SEV-SNP: the report's signed bytes (ABI spec, ATTESTATION_REPORT: 0x00 to 0x29F)
SNP_SIGNED = 0x2A0

_RUNS = [b"\xff" * 9, b"\x00" * 9, b"\x7f\xff\xff\xff\xff\xff\xff\xff\xff", b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff"]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if len(out) < 2:
            out = bytearray(data)
        op = rng.random()
        at = rng.randrange(len(out))
        if op < 0.5:
            out[at] = rng.randrange(256)
        elif op < 0.65:
            del out[at:]
        elif op < 0.8:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            out[at : at + rng.choice([1, 2, 4, 8, 9])] = rng.choice(_RUNS)
    return bytes(out)


def _cases() -> list[Any]:
    out = []
    for sample in _samples("sev-snp"):
        if sample.get("endorsement"):
            out.append(pytest.param("sev-snp", sample, id=f"sev-snp-{_ids([sample])[0]}"))
    out += [pytest.param("tdx", s, id=f"tdx-{_ids([s])[0]}") for s in _samples("tdx") if s["evidence"].endswith(".dat")]
    out += [pytest.param("nitro", s, id=f"nitro-{_ids([s])[0]}") for s in _samples("aws-nitro")]
    out += [pytest.param("tpm", s, id="tpm-gce") for s in _samples("tpm2-quote")]
    return out


def _inputs(kind: str, sample: dict[str, Any]) -> tuple[bytes, list[bytes], datetime, Policy]:
    if kind == "tpm":
        gce = "samples/tpm/go-tpm-tools/gce-ca-certs/"
        evidence = _read("samples/tpm/go-tpm-tools/gce-cos-85-nonce9009.pb")
        endorsements = [_read(gce + "tpm_ek_intermediate_2.crt"), _read(gce + "tpm_ek_root_1.cer")]
        policy = Policy(expected_report_data=bytes.fromhex(sample["fields"]["extraData"]))
        return evidence, endorsements, datetime.fromisoformat(sample["verify_at"]), policy
    if kind == "nitro":
        raw = _read(sample["evidence"])
        binary = raw if raw[:1] in (b"\x84", b"\xd2") else base64.b64decode(raw)
        return binary, [], datetime.fromtimestamp(sample["fields"]["timestamp_ms"] / 1000, tz=UTC), Policy()
    endorsements = [_read(sample["endorsement"])] if sample.get("endorsement") else []
    if kind == "sev-snp":
        endorsements.append(_read(sample["chain"]))  # the ASK and ARK
    return _read(sample["evidence"]), endorsements, datetime.fromisoformat(sample["verify_at"]), Policy()


@pytest.mark.parametrize(("kind", "sample"), _cases())
def test_mutated_evidence_is_appraised_or_refused_never_a_crash(kind: str, sample: dict[str, Any]) -> None:
    evidence, endorsements, at, policy = _inputs(kind, sample)
    genuine = appraise(kind, evidence, endorsements=endorsements, now=at, policy=policy)
    assert all(c.ok for c in genuine.checks if c.name != "debug_disabled"), genuine.failed  # the genuine sample verifies
    signed_changes = 0
    rng = random.Random(f"{kind}:{sample['evidence']}")
    refused = 0
    for case in range(CASES):
        mutated = _mutate(evidence, rng)
        try:
            appraisal = appraise(kind, mutated, endorsements=endorsements, now=at, policy=policy)
        except LedgerError:
            refused += 1
            continue
        if kind == "sev-snp" and len(mutated) == len(evidence):
            changed = [i for i, (a, b) in enumerate(zip(evidence, mutated, strict=True)) if a != b]
            if changed and changed[0] < SNP_SIGNED:
                signed_changes += 1
                assert not appraisal.check("report_signature").ok and appraisal.verdict == "reject", (case, changed[:4])
    assert refused > 0  # the mutations reach the parsers
    assert kind != "sev-snp" or signed_changes > 10  # and the signed bytes
