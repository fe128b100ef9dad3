"""c2sp.org/tlog-proof@v1: exact text, strict parsing, and offline verification."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, cosign_checkpoint, sign_checkpoint
from ledger.errors import (
    MalformedError,
    RootMismatchError,
    SignatureError,
    TooLargeError,
    VerificationError,
)
from ledger.tlog.hashing import leaf_hash
from ledger.tlog.note import Ed25519CosignatureSigner, Ed25519NoteSigner, parse_vkey, sign_note
from ledger.tlog.proof import (
    MAX_PROOF_HASHES,
    MAX_TLOG_PROOF_BYTES,
    TlogProof,
    format_tlog_proof,
    parse_tlog_proof,
    verify_tlog_proof,
)
from tests.conftest import load_vector

ORIGIN = "example.com/fancylog"
LOG = Ed25519NoteSigner(ORIGIN, bytes([3]) * 32)
WITNESSES = [
    Ed25519CosignatureSigner(f"witness{i}.example", bytes([40 + i]) * 32) for i in range(3)
]
ENTRIES = [f"entry {i}".encode() for i in range(11)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def _checkpoint(cosigners: int = 0) -> bytes:
    cp = Checkpoint(ORIGIN, len(LEAVES), merkle.root(LEAVES))
    signed = sign_checkpoint(cp, LOG)
    for i, witness in enumerate(WITNESSES[:cosigners]):
        signed = cosign_checkpoint(signed, witness, timestamp=1_700_000_000 + i)
    return signed


def _proof(index: int = 6, *, extra: bytes | None = None, cosigners: int = 0) -> TlogProof:
    hashes = merkle.inclusion_proof(index, LEAVES)
    return TlogProof(index=index, hashes=hashes, checkpoint=_checkpoint(cosigners), extra=extra)


def test_exact_text() -> None:
    proof = _proof(6, extra=b"age-v1.2.1-darwin-arm64.tar.gz")
    text = format_tlog_proof(proof)
    b64 = [base64.b64encode(h).decode() for h in proof.hashes]
    expected = (
        "c2sp.org/tlog-proof@v1\n"
        "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6\n"
        "index 6\n" + "".join(h + "\n" for h in b64) + "\n" + proof.checkpoint.decode()
    )
    assert text == expected
    assert text.endswith("\n\n\u2014 example.com/fancylog " + text.rsplit(" ", 1)[1])


@pytest.mark.parametrize("extra", [None, b"\x00", b"opaque extra data"])
@pytest.mark.parametrize("index", [0, 5, 10])
def test_round_trip(index: int, extra: bytes | None) -> None:
    proof = _proof(index, extra=extra, cosigners=2)
    text = format_tlog_proof(proof)
    parsed = parse_tlog_proof(text)
    assert parsed == proof
    assert parse_tlog_proof(text.encode()) == proof
    assert format_tlog_proof(parsed) == text


def test_single_leaf_tree_has_no_hashes() -> None:
    cp = sign_checkpoint(Checkpoint(ORIGIN, 1, LEAVES[0]), LOG)
    proof = TlogProof(index=0, hashes=[], checkpoint=cp)
    text = format_tlog_proof(proof)
    assert text.startswith("c2sp.org/tlog-proof@v1\nindex 0\n\n" + ORIGIN + "\n1\n")
    parsed = parse_tlog_proof(text)
    assert parsed.hashes == []
    assert verify_tlog_proof(parsed, LEAVES[0], LOG.verifier()).size == 1


def _good_text() -> str:
    return format_tlog_proof(_proof(6))


def _mutations() -> list[tuple[str, str]]:
    good = _good_text()
    head, rest = good.split("index 6\n", 1)
    hash_lines, checkpoint = rest.split("\n\n", 1)
    first_hash = hash_lines.split("\n")[0]
    return [
        (good.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"), "does not start"),
        (good.replace("c2sp.org/tlog-proof@v1\n", "c2sp.org/tlog-proof@v1 \n"), "does not start"),
        (good.replace("c2sp.org/tlog-proof@v1\n", "c2sp.org/tlog-proof@v1\r\n"), "does not start"),
        ("\n" + good, "does not start"),
        (good.replace("index 6", "index 06"), "index <decimal>"),
        (good.replace("index 6", "index -6"), "index <decimal>"),
        (good.replace("index 6", "index  6"), "index <decimal>"),
        (good.replace("index 6", "index 6 "), "index <decimal>"),
        (good.replace("index 6", "Index 6"), "index <decimal>"),
        (good.replace("index 6", "index \u0666"), "index <decimal>"),  # Arabic-Indic six
        (good.replace("index 6", f"index {2**64}"), "64 bits"),
        (good.replace("index 6\n", ""), "index <decimal>"),
        (good.replace("index 6\n", "index 6\r\n"), "index <decimal>"),
        (good.replace("index 6\n", "extra \nindex 6\n"), "base64|no data"),
        (good.replace("index 6\n", "extra AB==\nindex 6\n"), "canonical"),
        (good.replace("index 6\n", "extra AA\nindex 6\n"), "base64"),
        (good.replace("index 6\n", "index 6\nextra AA==\n"), "base64|bytes"),
        (good.replace("index 6\n", "extra AA==\nextra AA==\nindex 6\n"), "index <decimal>"),
        (good.replace(first_hash, first_hash + " "), "base64"),
        (good.replace(first_hash, first_hash.rstrip("=")), "base64"),
        (good.replace(first_hash, base64.b64encode(bytes(31)).decode()), "31 bytes"),
        (good.replace(first_hash, base64.b64encode(bytes(33)).decode()), "33 bytes"),
        (good.replace(first_hash + "\n", first_hash + "\r\n"), "base64"),
        (head + "index 6\n" + hash_lines + "\n" + checkpoint, "blank line|base64"),
        (head + "index 6\n" + hash_lines + "\n\n\n" + checkpoint, "note|checkpoint|base64"),
        (good.split("\n\n")[0] + "\n", "blank line"),
        ("c2sp.org/tlog-proof@v1", "header"),
        ("", "header"),
        (head + "index 6\n" + hash_lines + "\n\n" + "not a note\n", "note"),
        (good.replace("\n11\n", "\n011\n"), "canonical decimal"),
        (good + "trailing line\n", "em dash"),
        (good.replace("\u2014", "-"), "em dash|blank line|base64"),
    ]


@pytest.mark.parametrize(("text", "reason"), _mutations())
def test_malformed(text: str, reason: str) -> None:
    with pytest.raises(MalformedError, match=reason):
        parse_tlog_proof(text)


def test_too_many_hashes() -> None:
    good = _good_text()
    many = "".join(base64.b64encode(bytes(32)).decode() + "\n" for _ in range(MAX_PROOF_HASHES + 1))
    text = good.replace("index 6\n", "index 6\n" + many, 1)
    with pytest.raises(MalformedError, match="more than 64"):
        parse_tlog_proof(text)
    with pytest.raises(ValueError, match="at most 64"):
        format_tlog_proof(TlogProof(6, [bytes(32)] * 65, _checkpoint()))


def test_invalid_utf8_and_oversize() -> None:
    good = _good_text().encode()
    with pytest.raises(MalformedError, match="UTF-8"):
        parse_tlog_proof(good.replace(b"index", b"\xffndex"))
    with pytest.raises(TooLargeError, match=str(MAX_TLOG_PROOF_BYTES)):
        parse_tlog_proof(good + b"x" * MAX_TLOG_PROOF_BYTES)
    with pytest.raises(TooLargeError):
        parse_tlog_proof(good.decode() + "x" * MAX_TLOG_PROOF_BYTES)


def test_format_misuse() -> None:
    cp = _checkpoint()
    with pytest.raises(ValueError, match="uint64"):
        format_tlog_proof(TlogProof(-1, [], cp))
    with pytest.raises(ValueError, match="empty"):
        format_tlog_proof(TlogProof(0, [], cp, extra=b""))
    with pytest.raises(MalformedError, match="32 bytes"):
        format_tlog_proof(TlogProof(0, [bytes(31)], cp))
    with pytest.raises(MalformedError):
        format_tlog_proof(TlogProof(0, [], b"not a note"))
    with pytest.raises(MalformedError, match="fewer than three"):
        format_tlog_proof(TlogProof(0, [], sign_note("not a checkpoint\n", [LOG])))


# --------------------------------------------------------------------------------------------
# Verification


@pytest.mark.parametrize("index", range(len(LEAVES)))
def test_verify_every_index(index: int) -> None:
    proof = parse_tlog_proof(format_tlog_proof(_proof(index, cosigners=3)))
    witnesses = [w.verifier() for w in WITNESSES]
    cp = verify_tlog_proof(
        proof, LEAVES[index], LOG.verifier(), witness_verifiers=witnesses, threshold=3
    )
    assert (cp.origin, cp.size) == (ORIGIN, len(LEAVES))
    with pytest.raises(VerificationError):
        verify_tlog_proof(proof, LEAVES[(index + 1) % len(LEAVES)], LOG.verifier())


def test_verify_one_bit_flips_of_the_path_fail() -> None:
    proof = _proof(6)
    for i in range(len(proof.hashes)):
        for bit in (0, 7, 100, 255):
            hashes = list(proof.hashes)
            changed = bytearray(hashes[i])
            changed[bit // 8] ^= 1 << (bit % 8)
            hashes[i] = bytes(changed)
            bad = TlogProof(proof.index, hashes, proof.checkpoint)
            with pytest.raises(VerificationError):
                verify_tlog_proof(bad, LEAVES[6], LOG.verifier())


def test_verify_refuses_wrong_index_key_origin_and_policy() -> None:
    proof = _proof(6, cosigners=1)
    with pytest.raises(VerificationError):
        verify_tlog_proof(TlogProof(7, proof.hashes, proof.checkpoint), LEAVES[6], LOG.verifier())
    with pytest.raises(VerificationError):
        verify_tlog_proof(TlogProof(11, proof.hashes, proof.checkpoint), LEAVES[6], LOG.verifier())
    other_log = Ed25519NoteSigner(ORIGIN, bytes([4]) * 32)
    with pytest.raises(SignatureError, match="no verifiable signatures"):
        verify_tlog_proof(proof, LEAVES[6], other_log.verifier())
    with pytest.raises(VerificationError, match="expected origin"):
        verify_tlog_proof(proof, LEAVES[6], LOG.verifier(), origin="example.com/other")
    witnesses = [w.verifier() for w in WITNESSES]
    with pytest.raises(VerificationError, match="1 of the required 2"):
        verify_tlog_proof(
            proof, LEAVES[6], LOG.verifier(), witness_verifiers=witnesses, threshold=2
        )
    assert verify_tlog_proof(
        proof, LEAVES[6], LOG.verifier(), witness_verifiers=witnesses, threshold=1
    )


@pytest.mark.vectors
def test_proof_around_a_real_cosigned_checkpoint() -> None:
    """The alpha3 checkpoint (log + 3 witnesses) carried verbatim in a proof text."""
    vectors: dict[str, Any] = load_vector("notes/signed_note_checkpoint_cosignature_vectors.json")
    case = next(c for c in vectors["cosignature_v1"] if c["id"].startswith("rekor-v2"))
    note = case["cosigned_checkpoint"].encode()
    index = 4026478  # the last leaf: its path has one hash per set bit of the index
    path = [bytes([i]) * 32 for i in range(bin(index).count("1"))]
    proof = TlogProof(index=index, hashes=path, checkpoint=note)
    parsed = parse_tlog_proof(format_tlog_proof(proof))
    assert parsed == proof
    log = parse_vkey(case["log_vkey_derived"])
    witnesses = [parse_vkey(c["witness_vkey"]) for c in case["decoded_cosignatures"]]
    # Signatures and the policy pass; the made-up path does not lead to the real root.
    with pytest.raises(RootMismatchError, match="root"):
        verify_tlog_proof(parsed, bytes(32), log, witness_verifiers=witnesses, threshold=3)
