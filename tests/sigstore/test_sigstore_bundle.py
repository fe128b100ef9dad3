"""parse_bundle: every accepted media type, and a clear MalformedError for every malformed bundle."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from ledger.errors import MalformedError, TooLargeError
from ledger.interop.sigstore import MAX_BUNDLE_BYTES, parse_bundle
from ledger.interop.sigstore.bundle import BUNDLE_MEDIA_TYPES, MAX_TLOG_ENTRIES

pytestmark = pytest.mark.vectors

V03 = "sigstore-bundles/conformance/happy-path-intoto-in-dsse-v3/bundle.sigstore.json"
V02 = "sigstore-bundles/sigstore-python/bundle_v3_github.whl.sigstore"
MESSAGE = "sigstore-bundles/sigstore-python/bundle_v3.txt.sigstore"


@pytest.fixture
def v03(read: Callable[[str], bytes]) -> dict[str, Any]:
    return json.loads(read(V03))


@pytest.fixture
def message(read: Callable[[str], bytes]) -> dict[str, Any]:
    return json.loads(read(MESSAGE))


def _parse(doc: dict[str, Any]) -> Any:
    return parse_bundle(json.dumps(doc).encode())


def test_parses_both_v03_spellings_and_keeps_the_bytes(read: Callable[[str], bytes]) -> None:
    for path in (V03, "sigstore-bundles/conformance/happy-path-v0.3/bundle.sigstore.json"):
        raw = read(path)
        bundle = parse_bundle(raw)
        assert bundle.version == "0.3"
        assert bundle.raw == raw
        assert len(bundle.certificates) == 1
    assert parse_bundle(read(V02)).version == "0.2"


@pytest.mark.parametrize("media_type", sorted(BUNDLE_MEDIA_TYPES))
def test_every_media_type_is_accepted(media_type: str, read: Callable[[str], bytes]) -> None:
    doc = json.loads(read(V02))
    if BUNDLE_MEDIA_TYPES[media_type] == "0.3":  # v0.3 carries the leaf alone
        chain = doc["verificationMaterial"].pop("x509CertificateChain")
        doc["verificationMaterial"]["certificate"] = chain["certificates"][0]
    doc["mediaType"] = media_type
    assert _parse(doc).version == BUNDLE_MEDIA_TYPES[media_type]


def test_parsed_fields(v03: dict[str, Any], message: dict[str, Any]) -> None:
    bundle = _parse(v03)
    entry = bundle.tlog_entries[0]
    assert entry.kind_version == "dsse/0.0.1"
    assert entry.log_index == 155690850
    assert entry.integrated_time == 1734374576
    assert entry.inclusion_proof is not None
    assert entry.inclusion_proof.tree_size == 33786589
    assert len(entry.inclusion_proof.hashes) == 11
    assert bundle.envelope is not None
    assert bundle.envelope.payload_type == "application/vnd.in-toto+json"
    signed = _parse(message).message_signature
    assert signed is not None
    assert signed.digest_algorithm == "SHA2_256"
    assert signed.digest is not None
    assert len(signed.digest) == 32


def test_int64_as_json_number_is_accepted(v03: dict[str, Any]) -> None:
    v03["verificationMaterial"]["tlogEntries"][0]["logIndex"] = 155690850
    assert _parse(v03).tlog_entries[0].log_index == 155690850


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', "missing verificationMaterial"),
    ],
)
def test_not_a_bundle(data: bytes, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        parse_bundle(data)


def test_truncated_bundle(read: Callable[[str], bytes]) -> None:
    raw = read(V03)
    for cut in (1, len(raw) // 2, len(raw) - 2):
        with pytest.raises(MalformedError, match="not valid JSON"):
            parse_bundle(raw[:cut])


def test_oversized_bundle() -> None:
    with pytest.raises(TooLargeError, match=str(MAX_BUNDLE_BYTES)):
        parse_bundle(b" " * (MAX_BUNDLE_BYTES + 1))


def test_deeply_nested_json_is_malformed() -> None:
    with pytest.raises(MalformedError):
        parse_bundle(b"[" * 100_000)


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.dev.sigstore.bundle+json;version=0.4",
        "application/vnd.dev.sigstore.bundle.v0.2+json",  # only v0.3 has the short spelling
        "application/vnd.dev.sigstore.bundle+json",
        "application/vnd.in-toto+json",
        "",
        7,
    ],
)
def test_wrong_media_type(v03: dict[str, Any], media_type: object) -> None:
    v03["mediaType"] = media_type
    with pytest.raises(MalformedError, match="mediaType"):
        _parse(v03)


def test_missing_verification_material(v03: dict[str, Any]) -> None:
    del v03["verificationMaterial"]
    with pytest.raises(MalformedError, match="missing verificationMaterial"):
        _parse(v03)


def test_signer_material_is_exactly_one(v03: dict[str, Any]) -> None:
    material = v03["verificationMaterial"]
    cert = material.pop("certificate")
    with pytest.raises(MalformedError, match=r"exactly one of publicKey.*found none"):
        _parse(v03)
    material["certificate"] = cert
    material["publicKey"] = {"hint": "abc"}
    with pytest.raises(MalformedError, match="found publicKey, certificate"):
        _parse(v03)


def test_v03_must_not_use_a_chain_and_v02_must_not_use_certificate(
    v03: dict[str, Any], read: Callable[[str], bytes]
) -> None:
    material = v03["verificationMaterial"]
    material["x509CertificateChain"] = {"certificates": [material.pop("certificate")]}
    with pytest.raises(MalformedError, match="v0.3 must use certificate"):
        _parse(v03)
    doc = json.loads(read(V02))
    chain = doc["verificationMaterial"].pop("x509CertificateChain")
    doc["verificationMaterial"]["certificate"] = chain["certificates"][0]
    with pytest.raises(MalformedError, match="v0.2 must use x509CertificateChain"):
        _parse(doc)


def test_content_is_exactly_one(v03: dict[str, Any], message: dict[str, Any]) -> None:
    v03["messageSignature"] = message["messageSignature"]
    with pytest.raises(MalformedError, match="exactly one of messageSignature or dsseEnvelope"):
        _parse(v03)
    del v03["messageSignature"]
    del v03["dsseEnvelope"]
    with pytest.raises(MalformedError, match="exactly one of messageSignature or dsseEnvelope"):
        _parse(v03)


def test_dsse_envelope_with_two_signatures(v03: dict[str, Any]) -> None:
    sigs = v03["dsseEnvelope"]["signatures"]
    sigs.append(dict(sigs[0]))
    with pytest.raises(MalformedError, match="exactly one"):
        _parse(v03)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("verificationMaterial", "certificate", "rawBytes"), "certificate.rawBytes"),
        (("dsseEnvelope", "signatures", 0, "sig"), "envelope signature 0"),
        (("dsseEnvelope", "payload"), "envelope payload"),
        (("verificationMaterial", "tlogEntries", 0, "canonicalizedBody"), "canonicalizedBody"),
        (("verificationMaterial", "tlogEntries", 0, "logId", "keyId"), "logId.keyId"),
        (("verificationMaterial", "tlogEntries", 0, "inclusionProof", "rootHash"), "rootHash"),
        (("verificationMaterial", "tlogEntries", 0, "inclusionProof", "hashes", 3), r"hashes\[3\]"),
        (("verificationMaterial", "tlogEntries", 0, "inclusionPromise", "signedEntryTimestamp"), "signedEntryTimestamp"),
    ],
)
def test_bad_base64(v03: dict[str, Any], path: tuple[Any, ...], field: str) -> None:
    target: Any = v03
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "not*base64!"
    with pytest.raises(MalformedError, match=field):
        _parse(v03)


def test_certificate_that_is_not_der(v03: dict[str, Any]) -> None:
    v03["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(b"\x30\x03abc").decode()
    with pytest.raises(MalformedError, match="not a DER X.509 certificate"):
        _parse(v03)


@pytest.mark.parametrize("value", ["01", "-1", "1.5", "", True, None, [], "9223372036854775808"])
def test_bad_int64(v03: dict[str, Any], value: object) -> None:
    v03["verificationMaterial"]["tlogEntries"][0]["logIndex"] = value
    with pytest.raises(MalformedError, match="logIndex"):
        _parse(v03)


def test_unknown_fields_are_refused(v03: dict[str, Any]) -> None:
    v03["verificationMaterial"]["tlogEntries"][0]["log_index"] = "1"  # the proto name, not JSON's
    with pytest.raises(MalformedError, match="unknown fields: log_index"):
        _parse(v03)
    del v03["verificationMaterial"]["tlogEntries"][0]["log_index"]
    v03["extra"] = 1
    with pytest.raises(MalformedError, match="unknown fields: extra"):
        _parse(v03)


def test_wrong_hash_lengths(v03: dict[str, Any], message: dict[str, Any]) -> None:
    proof = v03["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["hashes"][0] = base64.b64encode(bytes(31)).decode()
    with pytest.raises(MalformedError, match=r"hashes\[0\] is 31 bytes"):
        _parse(v03)
    message["messageSignature"]["messageDigest"]["digest"] = base64.b64encode(bytes(20)).decode()
    with pytest.raises(MalformedError, match="20 bytes"):
        _parse(message)
    message["messageSignature"]["messageDigest"]["algorithm"] = "MD5"
    with pytest.raises(MalformedError, match="algorithm 'MD5'"):
        _parse(message)


def test_too_many_entries_or_proof_hashes(v03: dict[str, Any]) -> None:
    entries = v03["verificationMaterial"]["tlogEntries"]
    entries.extend([entries[0]] * MAX_TLOG_ENTRIES)
    with pytest.raises(MalformedError, match="more than"):
        _parse(v03)
    del entries[1:]
    entries[0]["inclusionProof"]["hashes"] = entries[0]["inclusionProof"]["hashes"] * 7
    with pytest.raises(MalformedError, match="more than 64"):
        _parse(v03)


def test_missing_tlog_fields(v03: dict[str, Any]) -> None:
    entry = v03["verificationMaterial"]["tlogEntries"][0]
    del entry["kindVersion"]
    with pytest.raises(MalformedError, match=r"tlogEntries\[0\] is missing kindVersion"):
        _parse(v03)
