"""Every Sigstore bundle case of ../shared/vectors/provenance/expected.json gives its stated result.

Each case runs twice: as shipped (our checks, then sigstore-python's Verifier where it covers
the bundle) and with our own checks alone, so that neither half carries the other.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import ConfigurationError, MalformedError, VerificationError
from ledger.records.keys import PublicKey
from ledger.interop.sigstore import (
    TrustedRoots,
    VerifiedBundle,
    load_trusted_roots,
    parse_bundle,
    verify_bundle,
)
from ledger.interop.sigstore import _sigstore_python
from ledger.interop.sigstore.trust import ENV_TRUSTED_ROOTS, default_trusted_root_path
from ledger.records.statement import parse_statement
from tests.sigstore.sigstore_cases import (
    EXTRA_CASES,
    NOW,
    PUBLIC_GOOD,
    STAGING,
    Case,
    bundle_cases,
)

pytestmark = pytest.mark.vectors

CASES = bundle_cases()
ALL_CASES = CASES + EXTRA_CASES


def _verify(
    case: Case,
    read: Callable[[str], bytes],
    roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
) -> VerifiedBundle:
    bundle = parse_bundle(read(case.bundle))
    artifact = read(case.artifact) if case.artifact else None
    return verify_bundle(
        bundle, roots_for(case.trusted_root), artifact=artifact, public_key=key_for(case.public_key), now=NOW
    )


def test_expected_json_lists_the_two_failing_cases() -> None:
    # Guard against a vectors update silently dropping the refusal cases.
    failing = sorted(c.id for c in CASES if c.expect == "fail")
    assert failing == ["dsse-mismatch-sig_fail", "intoto-expired-certificate_fail"]
    assert len(CASES) == 8


@pytest.mark.parametrize("checks", ["with-sigstore-python", "own-only"])
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_case_gives_its_stated_result(
    case: Case,
    checks: str,
    read: Callable[[str], bytes],
    roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if checks == "own-only":
        monkeypatch.setattr(_sigstore_python, "covers", lambda bundle: False)
    if case.expect == "fail":
        with pytest.raises(VerificationError):
            _verify(case, read, roots_for, key_for)
        return
    verified = _verify(case, read, roots_for, key_for)
    sample = case.sample or {}
    # What the bundle establishes agrees with what expected.json says about it.
    if sample.get("content") == "dsseEnvelope" or verified.envelope is not None:
        assert verified.envelope is not None
        assert verified.message_digest is None
        statement = parse_statement(verified.envelope.payload)
        if "subject" in sample:
            names = {(s.name, s.digest.get("sha256")) for s in statement.subjects}
            assert (sample["subject"]["name"], sample["subject"]["sha256"]) in names
        if "predicate_type" in sample:
            assert statement.predicate_type == sample["predicate_type"]
    else:
        assert verified.message_digest is not None
        assert verified.message_digest[1] == hashlib.sha256(read(case.artifact or "")).digest()
        if "artifact_sha256" in sample:
            assert verified.message_digest[1].hex() == sample["artifact_sha256"]
    if case.public_key:
        assert verified.identity is None
        assert verified.public_key is not None
    else:
        assert verified.identity is not None
        assert verified.signing_certificate is not None
        if "san" in sample:
            assert verified.identity.san == sample["san"]
            assert verified.identity.issuer == sample["issuer"]
    if "tlog_kind" in sample:
        assert verified.entries[0].kind == sample["tlog_kind"].split(" ")[0]
    entry = parse_bundle(read(case.bundle)).tlog_entries[0]
    assert verified.log_index == entry.log_index
    assert verified.log_id == entry.log_id
    assert verified.times


def test_expired_certificate_fails_on_time_alone(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = next(c for c in CASES if c.id == "intoto-expired-certificate_fail")
    with pytest.raises(VerificationError, match="does not chain to a trusted Fulcio CA at 2023-02-01"):
        verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), now=NOW)


def test_mismatched_dsse_signature_fails_on_the_log_entry(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots], own_checks_only: None
) -> None:
    case = next(c for c in CASES if c.id == "dsse-mismatch-sig_fail")
    with pytest.raises(VerificationError, match="tlog entry signature does not match"):
        verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), now=NOW)


def test_sigstore_python_runs_where_it_covers_the_case(
    read: Callable[[str], bytes],
    roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = _sigstore_python.verify_with_sigstore_python

    def spy(bundle: Any, document: bytes, digest: bytes | None) -> None:
        calls.append(bundle.tlog_entries[0].kind_version)
        real(bundle, document, digest)

    monkeypatch.setattr(_sigstore_python, "verify_with_sigstore_python", spy)
    for case in ALL_CASES:
        if case.expect == "pass":
            _verify(case, read, roots_for, key_for)
    # keyless hashedrekord/0.0.1 (three), dsse/0.0.1 and Rekor v2 hashedrekord/0.0.2; not the
    # managed-key or intoto/0.0.2 bundles.
    assert sorted(calls) == sorted(
        ["hashedrekord/0.0.1"] * 3 + ["dsse/0.0.1", "hashedrekord/0.0.2"]
    )


def test_rekor_v2_bundle_uses_the_ed25519_checkpoint_and_a_timestamp(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = next(c for c in CASES if "rekor-v2" in c.bundle)
    verified = verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), now=NOW)
    entry = verified.entries[0]
    assert verified.integrated_time is None
    assert entry.checkpoint is not None
    assert entry.checkpoint.origin == "log2025-alpha3.rekor.sigstage.dev"
    assert [t.source for t in verified.times] == ["rfc3161"]


def test_rekor_v1_checkpoint_origin_names_the_tree(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = next(c for c in CASES if c.id == "happy-path-intoto-in-dsse-v3")
    verified = verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), now=NOW)
    assert verified.entries[0].checkpoint is not None
    assert verified.entries[0].checkpoint.origin == "rekor.sigstore.dev - 1193050959916656506"
    assert verified.integrated_time is not None
    assert verified.integrated_time.year == 2024


# --------------------------------------------------------------------------------------------
# Inputs around the bundle: artifact, public key, now, trusted roots


def _case(case_id: str) -> Case:
    return next(c for c in ALL_CASES if c.id == case_id)


def test_message_signature_without_artifact_checks_the_stated_digest(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = _case("bundle_v3.txt.sigstore")
    verified = verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), now=NOW)
    assert verified.message_digest is not None
    assert verified.message_digest[1].hex() == case.sample["artifact_sha256"]  # type: ignore[index]


def test_wrong_artifact_fails(read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]) -> None:
    case = _case("bundle_v3.txt.sigstore")
    with pytest.raises(VerificationError, match="not the digest the bundle signs"):
        verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), artifact=b"other", now=NOW)


def test_dsse_artifact_must_be_a_statement_subject(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = _case("happy-path-intoto-in-dsse-v3")
    bundle = parse_bundle(read(case.bundle))
    a_txt = read("sigstore-bundles/conformance/a.txt")
    assert verify_bundle(bundle, roots_for(case.trusted_root), artifact=a_txt, now=NOW).envelope is not None
    with pytest.raises(VerificationError, match="not a subject of the statement"):
        verify_bundle(bundle, roots_for(case.trusted_root), artifact=a_txt + b"!", now=NOW)


def test_managed_key_bundle_needs_the_right_key(
    read: Callable[[str], bytes],
    roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
) -> None:
    from ledger.records.keys import generate_private_key  # noqa: PLC0415

    case = _case("managed-key-happy-path")
    bundle = parse_bundle(read(case.bundle))
    roots = roots_for(case.trusted_root)
    artifact = read(case.artifact or "")
    with pytest.raises(VerificationError, match="its public key must be given"):
        verify_bundle(bundle, roots, artifact=artifact, now=NOW)
    other = generate_private_key("ecdsa-p256").public_key
    with pytest.raises(VerificationError, match="not the given public key"):
        verify_bundle(bundle, roots, artifact=artifact, public_key=other, now=NOW)


def test_certificate_bundle_refuses_a_public_key(
    read: Callable[[str], bytes],
    roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
) -> None:
    case = _case("happy-path-intoto-in-dsse-v3")
    key = key_for("sigstore-bundles/conformance/managed-key-happy-path/key.pub")
    with pytest.raises(VerificationError, match="signed with a certificate"):
        verify_bundle(parse_bundle(read(case.bundle)), roots_for(case.trusted_root), public_key=key, now=NOW)


def test_now_before_the_signature_fails(read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]) -> None:
    case = _case("happy-path-intoto-in-dsse-v3")
    bundle = parse_bundle(read(case.bundle))
    early = NOW.replace(year=2024, month=1, day=1)
    with pytest.raises(VerificationError, match="after now"):
        verify_bundle(bundle, roots_for(case.trusted_root), now=early)
    with pytest.raises(ValueError, match="timezone"):
        verify_bundle(bundle, roots_for(case.trusted_root), now=NOW.replace(tzinfo=None))


def test_bundle_from_a_log_no_root_knows_fails(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    # A staging bundle against the public-good root only.
    case = _case("bundle_v3.txt.sigstore")
    with pytest.raises(VerificationError, match="no trusted root knows"):
        verify_bundle(parse_bundle(read(case.bundle)), roots_for(PUBLIC_GOOD), now=NOW)


def test_several_roots_from_the_environment(provenance: Path, read: Callable[[str], bytes]) -> None:
    value = f"{provenance / PUBLIC_GOOD}:{provenance / STAGING}"
    roots = load_trusted_roots(environ={ENV_TRUSTED_ROOTS: value})
    assert [r.source for r in roots.roots] == [str(provenance / PUBLIC_GOOD), str(provenance / STAGING)]
    for case_id in ("bundle_v3.txt.sigstore", "happy-path-intoto-in-dsse-v3"):
        case = _case(case_id)
        verified = verify_bundle(parse_bundle(read(case.bundle)), roots, now=NOW)
        assert verified.trusted_root == str(provenance / case.trusted_root)


def test_default_root_is_the_public_good_root_sigstore_ships(provenance: Path) -> None:
    roots = load_trusted_roots(environ={})
    assert roots.roots[0].source == str(default_trusted_root_path())
    shipped = json.loads(default_trusted_root_path().read_bytes())
    vector = json.loads((provenance / PUBLIC_GOOD).read_bytes())
    assert {t["logId"]["keyId"] for t in shipped["tlogs"]} == {t["logId"]["keyId"] for t in vector["tlogs"]}
    assert load_trusted_roots(environ={ENV_TRUSTED_ROOTS: ""}).roots[0].source == roots.roots[0].source


def test_bad_trusted_root_files_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_trusted_roots([tmp_path / "missing.json"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"mediaType": "application/json"}')
    with pytest.raises(ConfigurationError, match="mediaType"):
        load_trusted_roots([bad])
    bad.write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_trusted_roots([bad])


# --------------------------------------------------------------------------------------------
# v0.1 bundles: the inclusion promise (SET) stands in for a missing inclusion proof


def _as_v01_without_proof(raw: bytes) -> bytes:
    doc = json.loads(raw)
    doc["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1"
    for entry in doc["verificationMaterial"]["tlogEntries"]:
        del entry["inclusionProof"]
    return json.dumps(doc).encode()


def test_v01_bundle_without_proof_verifies_by_its_set(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = _case("bundle_v3_github.whl.sigstore")  # a v0.2 bundle with x509CertificateChain
    raw = _as_v01_without_proof(read(case.bundle))
    verified = verify_bundle(
        parse_bundle(raw), roots_for(case.trusted_root), artifact=read(case.artifact or ""), now=NOW
    )
    assert verified.entries[0].checkpoint is None
    assert verified.entries[0].has_inclusion_promise


def test_v01_bundle_with_a_bad_set_fails(read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]) -> None:
    case = _case("bundle_v3_github.whl.sigstore")
    doc = json.loads(_as_v01_without_proof(read(case.bundle)))
    promise = doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    sig = bytearray(base64.b64decode(promise["signedEntryTimestamp"]))
    sig[-1] ^= 1
    promise["signedEntryTimestamp"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(VerificationError, match="signed entry timestamp does not verify"):
        verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    with pytest.raises(VerificationError, match="neither an inclusion proof nor an inclusion promise"):
        verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)


def test_v02_bundle_without_proof_fails(read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]) -> None:
    case = _case("bundle_v3_github.whl.sigstore")
    doc = json.loads(read(case.bundle))
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    with pytest.raises(VerificationError, match="no inclusion proof"):
        verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)


def test_bundle_without_tlog_entries_fails(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = _case("managed-key-happy-path")
    doc = json.loads(read(case.bundle))
    doc["verificationMaterial"]["tlogEntries"] = []
    with pytest.raises(VerificationError, match="no transparency log entry"):
        verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)


def test_unverified_integrated_time_is_not_a_time_source(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    # Without its SET, a Rekor v1 entry's integratedTime is unsigned: no verified time is left.
    case = _case("happy-path-intoto-in-dsse-v3")
    doc = json.loads(read(case.bundle))
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    del entry["inclusionPromise"]
    with pytest.raises(VerificationError, match="no inclusion promise vouches for it"):
        verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)
    entry["logIndex"] = entry["inclusionProof"]["logIndex"]
    with pytest.raises(VerificationError, match="no verified time"):
        verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)


def test_verified_bundle_keeps_the_bundle_bytes(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots]
) -> None:
    case = _case("happy-path-intoto-in-dsse-v3")
    raw = read(case.bundle)
    verified = verify_bundle(parse_bundle(raw), roots_for(case.trusted_root), now=NOW)
    assert verified.bundle.raw == raw
    assert dataclasses.replace(verified).signed_at == verified.times[0].time


def test_a_nested_timestamp_that_does_not_parse_is_malformed(read: Callable[[str], bytes]) -> None:
    case = _case("managed-key-happy-path")
    doc = json.loads(read(case.bundle))
    doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"] = (
        base64.b64encode(b"not a timestamp").decode()
    )
    with pytest.raises(MalformedError, match="RFC 3161"):
        parse_bundle(json.dumps(doc).encode())
