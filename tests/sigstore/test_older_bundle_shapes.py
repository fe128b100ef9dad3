"""Two rules of Sigstore's client policy for older bundles, on generated bundles
(tests/sigstore/factory.py):

- a v0.1 bundle's inclusion proof may lack its checkpoint (older clients wrote them so): with no
  signed root it cannot prove inclusion, so the SET must vouch (inclusion "promised"), but its
  path must still lead to its stated root (sigstore-conformance's
  ``a.txt.invalid_inclusion_proof``: a wrong path beside a good SET is refused); from v0.2 on a
  proof without a checkpoint is refused;
- a bundle's certificates are the signing certificate first, never a CA, and no root CA after
  it: a trust anchor comes only from the trusted root (sigstore-conformance
  ``test_verify_rejects_root``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ledger.errors import MalformedError, VerificationError
from ledger.interop.sigstore import _sigstore_python, parse_bundle
from tests.sigstore.factory import LOG_HOST, TREE_ID, World, encode, verify


def _without_checkpoint(doc: dict[str, Any]) -> dict[str, Any]:
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
    return doc


def _der(cert: Any) -> dict[str, str]:
    import base64  # noqa: PLC0415

    return {"rawBytes": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()}


# ------------------------------------------------------------------ a proof without a checkpoint


def test_a_v01_proof_without_a_checkpoint_leaves_inclusion_to_the_set(world: World) -> None:
    doc = _without_checkpoint(world.bundle(kind="dsse", promise=True, proof=True))
    assert not _sigstore_python.covers(parse_bundle(encode(doc)))  # it would need the checkpoint
    verified = verify(world, doc)
    (entry,) = verified.entries
    assert entry.inclusion == "promised" and entry.checkpoint is None and entry.has_inclusion_promise
    assert [t.source for t in verified.times] == ["tlog"]


def test_a_v01_proof_without_a_checkpoint_and_no_set_is_refused(world: World) -> None:
    doc = _without_checkpoint(world.bundle(kind="dsse", promise=False, proof=True))
    with pytest.raises(VerificationError, match=r"neither an inclusion proof nor an inclusion promise \(its inclusion proof has no checkpoint"):
        verify(world, doc)


def test_a_v01_proof_without_a_checkpoint_must_still_lead_to_its_root(world: World) -> None:
    import base64  # noqa: PLC0415

    doc = _without_checkpoint(world.bundle(kind="dsse", promise=True, proof=True))
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    first = bytearray(base64.b64decode(proof["hashes"][0]))
    first[0] ^= 1
    proof["hashes"][0] = base64.b64encode(bytes(first)).decode()
    with pytest.raises(VerificationError, match="the inclusion proof does not lead to the stated root"):
        verify(world, doc)


def test_the_set_still_binds_the_entry_when_the_proof_has_no_checkpoint(world: World) -> None:
    doc = _without_checkpoint(world.bundle(kind="dsse", promise=True, proof=True))
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["logIndex"] = str(int(entry["logIndex"]) + 1)
    with pytest.raises(VerificationError, match="signed entry timestamp"):
        verify(world, doc)


@pytest.mark.parametrize("version", ["0.2", "0.3"])
def test_from_v02_a_proof_without_a_checkpoint_is_refused(world: World, version: str) -> None:
    doc = _without_checkpoint(world.bundle(kind="dsse", version=version, promise=True, proof=True, log_index=3))
    if version == "0.3":
        material = doc["verificationMaterial"]
        material["certificate"] = material.pop("x509CertificateChain")["certificates"][0]
    with pytest.raises(VerificationError, match=r"inclusion proof has no checkpoint \(required from bundle v0.2 on\)"):
        verify(world, doc)


# ------------------------------------------------------------------ the certificates a bundle carries


def test_an_intermediate_after_the_leaf_is_accepted_and_never_trusted_from_the_bundle(world: World, own_checks_only: None) -> None:
    # (sigstore-python's cross-check needs a CT log; the generated root has none)
    doc = world.bundle(kind="dsse", promise=True, proof=True)
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"].append(_der(world.intermediate))
    assert verify(world, doc).inclusion == "proven"


@pytest.mark.parametrize("chain", [("intermediate", "root"), ("root",)])
def test_a_root_ca_in_the_chain_is_refused(world: World, chain: tuple[str, ...]) -> None:
    doc = world.bundle(kind="dsse", promise=True, proof=True)
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"].extend(_der(getattr(world, c)) for c in chain)
    with pytest.raises(VerificationError, match=r"holds a root CA certificate \(certificate \d, CN=test-fulcio-root,O=test\)"):
        verify(world, doc)


def test_a_ca_as_the_signing_certificate_is_refused(world: World) -> None:
    doc = world.bundle(kind="dsse", promise=True, proof=True)
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"] = [_der(world.intermediate), _der(world.root)]
    with pytest.raises(VerificationError, match="signing certificate is a CA certificate, not a leaf"):
        verify(world, doc)


def test_a_certificate_whose_extensions_do_not_parse_is_refused_not_raised(world: World) -> None:
    """cryptography reads extensions lazily: a malformed one in a chain certificate is refused
    when the bundle is parsed (every part decoded), so the chain rules never meet a ValueError."""
    import datetime  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtensionOID, NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "malformed")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    bad = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x04\x00"), critical=True)
        .sign(key, hashes.SHA256())
    )
    doc = world.bundle(kind="dsse", promise=True, proof=True)
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"].append(_der(bad))
    with pytest.raises(MalformedError, match=r"certificates\[1\] is not a DER X.509 certificate this verifier can read"):
        verify(world, doc)


# ------------------------------------------------------------------ the checkpoint's origin


@pytest.mark.parametrize(
    ("origin", "refusal"),
    [
        (f"{LOG_HOST} - {TREE_ID}", None),  # Rekor v1: each shard's tree named
        (LOG_HOST, None),  # a log of one tree (sigstore-conformance's test logs)
        (f"{LOG_HOST} - tree", "is not 'rekor.test.example' or 'rekor.test.example - <tree id>'"),
        ("rekor.other.example", "is not 'rekor.test.example' or"),
        (f"{LOG_HOST} - {TREE_ID} - 1", "is not 'rekor.test.example' or"),
    ],
    ids=["host-and-tree", "host", "tree-not-a-number", "other-host", "extra-part"],
)
def test_a_rekor_v1_checkpoint_names_its_log(world: World, own_checks_only: None, origin: str, refusal: str | None) -> None:
    """The checkpoint is signed by the log key either way; its origin must still name the log."""
    doc = world.bundle(kind="dsse", promise=True, proof=True, origin=origin)
    if refusal is None:
        assert verify(world, doc).inclusion == "proven"
    else:
        with pytest.raises(VerificationError, match=re.escape(refusal)):
            verify(world, doc)
