"""ledger.interop.rekor: real production Rekor v1 entries verify offline; one-bit flips do not."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest

from ledger.errors import LedgerError, MalformedError, SignatureError, VerificationError
from ledger.interop.rekor import (
    parse_rekor_v1_entry,
    rekor_v1_set_payload,
    verify_rekor_entry,
)
from tests.conftest import load_vector

pytestmark = pytest.mark.vectors

FILES = {
    "no_set": "rekor/rekor_v1_production_hashedrekord_no_set.json",
    "with_set": "rekor/rekor_v1_production_hashedrekord_with_set.json",
}


@pytest.fixture(scope="module", params=sorted(FILES))
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_vector(FILES[request.param])


def _key(vector: dict[str, Any]) -> bytes:
    return base64.b64decode(vector["log"]["publicKey_der_b64"])


def _flip_b64(value: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def test_real_entries_verify(vector: dict[str, Any]) -> None:
    entry = parse_rekor_v1_entry(vector["tlogEntry"])
    result = verify_rekor_entry(entry, _key(vector))
    research = vector["verified_by_this_research"]
    assert hashlib.sha256(b"\x00" + entry.body).hexdigest() == research["leaf_hash_hex"]
    assert entry.body.decode() == vector["decoded_canonicalized_body"]
    assert result.checkpoint is not None
    assert result.inclusion == "proven"
    assert result.checkpoint.origin == f"rekor.sigstore.dev - {result.tree_id}"
    assert result.checkpoint.size == int(vector["tlogEntry"]["inclusionProof"]["treeSize"])
    assert entry.log_id.hex() == vector["log"]["logId_hex"]
    assert f"{int.from_bytes(entry.log_id[:4], 'big'):08x}" == research["checkpoint_key_id"]
    # The global index (what the SET signs) differs from the shard's tree index (the proof's).
    assert entry.proof is not None
    assert entry.log_index != entry.proof.tree_index
    assert result.set_verified == ("set_ok" in research)
    if result.set_verified:
        assert rekor_v1_set_payload(entry).decode() == research["set_signed_payload_rfc8785"]


def test_set_is_required_when_asked(vector: dict[str, Any]) -> None:
    if "inclusionPromise" in vector["tlogEntry"]:
        assert verify_rekor_entry(
            vector["tlogEntry"], _key(vector), require_set=True
        ).set_verified
    else:
        with pytest.raises(SignatureError, match="no signed entry timestamp"):
            verify_rekor_entry(vector["tlogEntry"], _key(vector), require_set=True)


def _with_note_signature_flipped(note: str, bit: int) -> str:
    text, line = note.split("\n\n")
    prefix, sig = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[4 + bit // 8] ^= 1 << (bit % 8)  # after the 4-byte key id
    return f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


def _mutations(entry: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One-bit flips (and small edits) of every field that the verification covers."""
    out: list[tuple[str, dict[str, Any]]] = []

    def mutated(label: str, path: tuple[Any, ...], change: Any) -> None:
        doc = copy.deepcopy(entry)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = change(parent[path[-1]])
        out.append((label, doc))

    proof = ("inclusionProof",)
    envelope = (*proof, "checkpoint", "envelope")
    size = entry["inclusionProof"]["treeSize"]
    for bit in (0, 77, 8 * 200 + 3):
        mutated(f"body bit {bit}", ("canonicalizedBody",), lambda v, b=bit: _flip_b64(v, b))
    for i in range(len(entry["inclusionProof"]["hashes"])):
        for bit in (0, 255):
            mutated(
                f"proof hash {i} bit {bit}", (*proof, "hashes", i), lambda v, b=bit: _flip_b64(v, b)
            )
    mutated("root bit", (*proof, "rootHash"), lambda v: _flip_b64(v, 9))
    mutated("log id bit", ("logId", "keyId"), lambda v: _flip_b64(v, 100))
    mutated("tree index -1", (*proof, "logIndex"), lambda v: str(int(v) - 1))
    mutated("tree size +1", (*proof, "treeSize"), lambda v: str(int(v) + 1))
    mutated("proof shortened", (*proof, "hashes"), lambda v: v[:-1])
    mutated("proof reordered", (*proof, "hashes"), lambda v: v[::-1])
    for bit in (0, 100, 300):
        mutated(
            f"checkpoint signature bit {bit}",
            envelope,
            lambda v, b=bit: _with_note_signature_flipped(v, b),
        )
    mutated("checkpoint size", envelope, lambda v: v.replace(f"\n{size}\n", f"\n{int(size) - 1}\n"))
    mutated("checkpoint origin", envelope, lambda v: v.replace(" - ", " - 1", 1))
    if "inclusionPromise" in entry:
        for bit in (0, 200, 500):
            mutated(
                f"SET bit {bit}",
                ("inclusionPromise", "signedEntryTimestamp"),
                lambda v, b=bit: _flip_b64(v, b),
            )
        mutated("integrated time +1", ("integratedTime",), lambda v: str(int(v) + 1))
        mutated("global log index ^1", ("logIndex",), lambda v: str(int(v) ^ 1))
    return out


def test_one_bit_flips_fail(vector: dict[str, Any]) -> None:
    mutations = _mutations(vector["tlogEntry"])
    assert len(mutations) > 20
    for label, doc in mutations:
        with pytest.raises(LedgerError) as info:
            verify_rekor_entry(doc, _key(vector))
        assert isinstance(info.value, VerificationError | MalformedError), label


def test_wrong_key_or_log_name_fails(vector: dict[str, Any]) -> None:
    other = load_vector("notes/signed_note_checkpoint_cosignature_vectors.json")[
        "rfc6962_type5_notes"
    ][0]
    with pytest.raises(VerificationError, match="log id"):
        verify_rekor_entry(
            vector["tlogEntry"], base64.b64decode(other["public_key_der_spki_b64"])
        )
    with pytest.raises(SignatureError):
        verify_rekor_entry(vector["tlogEntry"], _key(vector), log_name="rekor.example")
    with pytest.raises(MalformedError):
        verify_rekor_entry(vector["tlogEntry"], b"not a key")


def test_rest_log_entry_shape_verifies_too(vector: dict[str, Any]) -> None:
    """The same entry as Rekor's REST API returns it (hex hashes, JSON integers)."""
    e = vector["tlogEntry"]
    proof = e["inclusionProof"]
    rest: dict[str, Any] = {
        "body": e["canonicalizedBody"],
        "integratedTime": int(e["integratedTime"]),
        "logID": base64.b64decode(e["logId"]["keyId"]).hex(),
        "logIndex": int(e["logIndex"]),
        "verification": {
            "inclusionProof": {
                "logIndex": int(proof["logIndex"]),
                "treeSize": int(proof["treeSize"]),
                "rootHash": base64.b64decode(proof["rootHash"]).hex(),
                "hashes": [base64.b64decode(h).hex() for h in proof["hashes"]],
                "checkpoint": proof["checkpoint"]["envelope"],
            },
        },
    }
    if "inclusionPromise" in e:
        rest["verification"]["signedEntryTimestamp"] = e["inclusionPromise"]["signedEntryTimestamp"]
    assert verify_rekor_entry(rest, _key(vector)).set_verified == ("inclusionPromise" in e)
    rest["verification"]["inclusionProof"]["hashes"][0] = "AB" * 32
    with pytest.raises(MalformedError, match="lowercase hex"):
        verify_rekor_entry(rest, _key(vector))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("inclusionProof", []), "inclusion proof is not a JSON object"),
        (lambda d: d.__setitem__("integratedTime", "-1"), "integratedTime"),
        (lambda d: d.__setitem__("logIndex", "01"), "logIndex"),
        (lambda d: d.__setitem__("logIndex", str(1 << 64)), "logIndex"),
        (lambda d: d.__setitem__("canonicalizedBody", "***"), "base64"),
        (lambda d: d["inclusionProof"].__setitem__("rootHash", "AAAA"), "rootHash"),
        (lambda d: d["inclusionProof"].__setitem__("hashes", ["AAAA"]), "proof hash 0"),
        (lambda d: d["inclusionProof"].__setitem__("hashes", ["A" * 43 + "="] * 65), "at most 64"),
        (lambda d: d["inclusionProof"].__setitem__("checkpoint", {}), "checkpoint"),
        (lambda d: d["logId"].__setitem__("keyId", "AAAA"), "log id"),
    ],
)
def test_malformed_entries_are_refused(vector: dict[str, Any], change: Any, message: str) -> None:
    doc = copy.deepcopy(vector["tlogEntry"])
    change(doc)
    with pytest.raises(MalformedError, match=message):
        parse_rekor_v1_entry(doc)


# --------------------------------------------------------------------------------------------
# Inclusion promised (SET only), proven, both, neither


def test_promise_only_entry_verifies_as_promised() -> None:
    vector = load_vector(FILES["with_set"])
    for absent in ("missing", "null"):
        doc = copy.deepcopy(vector["tlogEntry"])
        if absent == "missing":
            del doc["inclusionProof"]
        else:
            doc["inclusionProof"] = None
        result = verify_rekor_entry(doc, _key(vector))
        assert result.inclusion == "promised" and result.set_verified
        assert result.checkpoint is None and result.tree_id is None
        with pytest.raises(VerificationError, match="only promised"):
            verify_rekor_entry(doc, _key(vector), require_proof=True)
        doc["inclusionPromise"]["signedEntryTimestamp"] = _flip_b64(doc["inclusionPromise"]["signedEntryTimestamp"], 7)
        with pytest.raises(SignatureError, match="does not verify"):
            verify_rekor_entry(doc, _key(vector))


def test_entry_with_both_is_proven_and_checks_both() -> None:
    vector = load_vector(FILES["with_set"])
    result = verify_rekor_entry(vector["tlogEntry"], _key(vector))
    assert result.inclusion == "proven" and result.set_verified
    doc = copy.deepcopy(vector["tlogEntry"])
    doc["inclusionProof"]["rootHash"] = _flip_b64(doc["inclusionProof"]["rootHash"], 3)
    with pytest.raises(VerificationError):
        verify_rekor_entry(doc, _key(vector))


def test_entry_with_neither_is_refused() -> None:
    vector = load_vector(FILES["no_set"])
    doc = copy.deepcopy(vector["tlogEntry"])
    del doc["inclusionProof"]
    with pytest.raises(VerificationError, match="neither an inclusion proof nor an inclusion promise"):
        verify_rekor_entry(doc, _key(vector))


def test_rest_entry_without_proof_verifies_by_its_set() -> None:
    vector = load_vector(FILES["with_set"])
    e = vector["tlogEntry"]
    rest = {
        "body": e["canonicalizedBody"],
        "integratedTime": int(e["integratedTime"]),
        "logID": base64.b64decode(e["logId"]["keyId"]).hex(),
        "logIndex": int(e["logIndex"]),
        "verification": {"signedEntryTimestamp": e["inclusionPromise"]["signedEntryTimestamp"]},
    }
    assert verify_rekor_entry(rest, _key(vector)).inclusion == "promised"
