"""One-bit flips in a bundle's signature, certificate, inclusion proof, checkpoint, SET or body fail.

Every flip runs with sigstore-python's cross-check switched off, so our own checks must catch it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger.errors import ConfigurationError, MalformedError, VerificationError
from ledger.records.keys import PublicKey
from ledger.interop.sigstore import TrustedRoots, parse_bundle, verify_bundle
from tests.sigstore.sigstore_cases import EXTRA_CASES, NOW, Case, bundle_cases

pytestmark = pytest.mark.vectors

#: The passing cases: Rekor v1 hashedrekord, v2 hashedrekord (Ed25519 checkpoint), dsse, intoto,
#: managed key.
PASSING = [c for c in bundle_cases() + EXTRA_CASES if c.expect == "pass"]


def _flip_b64(value: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def _flip_log_signature(note: str) -> str:
    """Flip one bit in the log's own (first) signature line of a signed note."""
    text, _, block = note.rpartition("\n\n")
    lines = block.split("\n")
    prefix, name, sig = lines[0].split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1  # past the 4-byte key id
    lines[0] = f"{prefix} {name} {base64.b64encode(bytes(raw)).decode()}"
    return text + "\n\n" + "\n".join(lines)


def _mutations(doc: dict[str, Any]) -> Iterator[tuple[str, Callable[[dict[str, Any]], None]]]:
    """(name, mutate in place) for every part of the bundle a flip must break."""
    material = doc["verificationMaterial"]
    entry = material["tlogEntries"][0]
    proof = entry.get("inclusionProof")

    if "dsseEnvelope" in doc:
        yield "dsse-signature", lambda d: _set(d, ("dsseEnvelope", "signatures", 0, "sig"), _flip_b64, 77)
        yield "dsse-payload", lambda d: _set(d, ("dsseEnvelope", "payload"), _flip_b64, 40)
        yield "dsse-payload-type", lambda d: d["dsseEnvelope"].__setitem__("payloadType", "application/vnd.in-toto+jsoN")
    else:
        yield "message-signature", lambda d: _set(d, ("messageSignature", "signature"), _flip_b64, 77)
        yield "message-digest", lambda d: _set(d, ("messageSignature", "messageDigest", "digest"), _flip_b64, 3)
    if "certificate" in material:
        # A bit in the issuer's signature over the certificate, and one in its public key.
        yield "certificate-signature", lambda d: _set(
            d, ("verificationMaterial", "certificate", "rawBytes"), _flip_b64, -9
        )
    if "x509CertificateChain" in material:
        yield "certificate-signature", lambda d: _set(
            d, ("verificationMaterial", "x509CertificateChain", "certificates", 0, "rawBytes"), _flip_b64, -9
        )
    yield "tlog-body", lambda d: _set(d, ("verificationMaterial", "tlogEntries", 0, "canonicalizedBody"), _flip_b64, 200)
    yield "log-index", lambda d: _bump(d, ("verificationMaterial", "tlogEntries", 0, "logIndex"))
    yield "log-id", lambda d: _set(d, ("verificationMaterial", "tlogEntries", 0, "logId", "keyId"), _flip_b64, 9)
    if proof is not None:
        for i in range(len(proof["hashes"])):
            yield f"proof-hash-{i}", (
                lambda d, i=i: _set(d, ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "hashes", i), _flip_b64, 5)
            )
        yield "proof-root", lambda d: _set(d, ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "rootHash"), _flip_b64, 1)
        yield "proof-index", lambda d: _bump(d, ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "logIndex"))
        yield "proof-size", lambda d: _bump(d, ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "treeSize"))
        yield "checkpoint-signature", lambda d: _set(
            d, ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "checkpoint", "envelope"), _flip_log_signature
        )
    if "inclusionPromise" in entry:
        yield "set", lambda d: _set(
            d, ("verificationMaterial", "tlogEntries", 0, "inclusionPromise", "signedEntryTimestamp"), _flip_b64, -1
        )
        yield "integrated-time", lambda d: _bump(d, ("verificationMaterial", "tlogEntries", 0, "integratedTime"))
    timestamps = material.get("timestampVerificationData", {}).get("rfc3161Timestamps", [])
    if timestamps:
        yield "rfc3161-timestamp", lambda d: _set(
            d,
            ("verificationMaterial", "timestampVerificationData", "rfc3161Timestamps", 0, "signedTimestamp"),
            _flip_b64,
            -1,
        )


def _set(doc: dict[str, Any], path: tuple[Any, ...], change: Callable[..., str], *args: Any) -> None:
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = change(target[path[-1]], *args)


def _bump(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    _set(doc, path, lambda value: str(int(value) + 1))


def _flip_cases() -> list[Any]:
    params = []
    for case in PASSING:
        path = case.bundle
        doc = json.loads((_provenance() / path).read_bytes()) if _provenance().is_dir() else None
        if doc is None:
            continue
        for name, mutate in _mutations(doc):
            params.append(pytest.param(case, mutate, id=f"{case.id}-{name}"))
    return params


def _provenance() -> Any:
    from tests.sigstore.sigstore_cases import provenance_dir  # noqa: PLC0415

    return provenance_dir()


@pytest.mark.parametrize(("case", "mutate"), _flip_cases())
def test_one_bit_flip_fails(
    case: Case,
    mutate: Callable[[dict[str, Any]], None],
    read: Callable[[str], bytes],
    roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
    own_checks_only: None,
) -> None:
    doc = json.loads(read(case.bundle))
    artifact = read(case.artifact) if case.artifact else None
    roots = roots_for(case.trusted_root)
    key = key_for(case.public_key)
    # The untouched bundle verifies, so the failure below is the flip's doing.
    verify_bundle(parse_bundle(read(case.bundle)), roots, artifact=artifact, public_key=key, now=NOW)
    mutate(doc)
    with pytest.raises((VerificationError, MalformedError)):
        bundle = parse_bundle(json.dumps(doc).encode())
        verify_bundle(bundle, roots, artifact=artifact, public_key=key, now=NOW)


def test_flips_cover_every_passing_case() -> None:
    ids = {p.id.split("-")[0] for p in _flip_cases()}
    assert len(_flip_cases()) > 100
    assert {c.id.split("-")[0] for c in PASSING} <= ids


def test_witness_cosignature_flip_is_ignored(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots], own_checks_only: None
) -> None:
    # Unknown signers' lines are ignored (C2SP signed-note): a flipped witness cosignature on
    # the Rekor v2 checkpoint does not matter while no witness is configured.
    case = next(c for c in PASSING if "rekor-v2" in c.bundle)
    doc = json.loads(read(case.bundle))
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    text, _, block = proof["checkpoint"]["envelope"].rpartition("\n\n")
    lines = block.split("\n")
    prefix, name, sig = lines[1].split(" ")
    lines[1] = f"{prefix} {name} {_flip_b64(sig, 100)}"
    proof["checkpoint"]["envelope"] = text + "\n\n" + "\n".join(lines)
    verified = verify_bundle(parse_bundle(json.dumps(doc).encode()), roots_for(case.trusted_root), now=NOW)
    assert verified.entries[0].checkpoint is not None


@pytest.mark.parametrize("case", PASSING, ids=lambda c: c.id)
@pytest.mark.parametrize("base_url", ["", "https://two words.example", "https://a+b.example"])
def test_a_trusted_root_whose_log_has_no_usable_name_fails_cleanly(
    case: Case,
    base_url: str,
    read: Callable[[str], bytes],
    key_for: Callable[[str | None], PublicKey | None],
    own_checks_only: None,
) -> None:
    """A hand-edited trusted root whose log's baseUrl gives no valid checkpoint key name: the
    bundle fails verification with a clear error (it used to escape as a bare ValueError)."""
    from ledger.errors import LedgerError  # noqa: PLC0415
    from ledger.interop.sigstore import parse_trusted_root  # noqa: PLC0415

    root = json.loads(read(case.trusted_root))
    for log in root.get("tlogs", []):
        log["baseUrl"] = base_url
    artifact = read(case.artifact) if case.artifact else None
    try:
        verify_bundle(parse_bundle(read(case.bundle)), [parse_trusted_root(json.dumps(root).encode())],
                      artifact=artifact, public_key=key_for(case.public_key), now=NOW)
    except LedgerError:
        pass  # refused with a clear error; a log whose name is not used for a checkpoint may pass


def test_a_trusted_root_log_base_url_must_be_a_string(read: Callable[[str], bytes]) -> None:
    from ledger.interop.sigstore import parse_trusted_root  # noqa: PLC0415

    case = PASSING[0]
    root = json.loads(read(case.trusted_root))
    root["tlogs"][0]["baseUrl"] = 5
    with pytest.raises(ConfigurationError, match="baseUrl must be a string"):
        parse_trusted_root(json.dumps(root).encode())
