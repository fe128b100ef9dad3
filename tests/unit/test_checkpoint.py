"""C2SP checkpoints and witness cosignatures: sigsum, Rekor, witness vectors, and strictness."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.tlog.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    cosign_checkpoint,
    cosignatures_result,
    format_checkpoint_text,
    open_checkpoint,
    parse_checkpoint_text,
    sign_checkpoint,
    verify_cosignatures,
)
from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.tlog.note import (
    Ed25519CosignatureSigner,
    Ed25519NoteSigner,
    Note,
    Signature,
    append_signatures,
    format_note,
    format_vkey,
    parse_note,
    parse_skey,
    parse_vkey,
    sign_note,
)
from tests.conftest import load_vector

VECTORS = "notes/signed_note_checkpoint_cosignature_vectors.json"
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = load_vector(VECTORS)
    return data


def _by_id(items: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    return next(item for item in items if item["id"] == ident)


# --------------------------------------------------------------------------------------------
# Vectors


@pytest.mark.vectors
def test_sigsum_checkpoint_resigns_byte_for_byte(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["checkpoints"], "sigsum-checkpoint")
    seed = bytes.fromhex(case["ed25519_seed_hex"])
    probe = Ed25519NoteSigner("probe", seed)
    origin = "sigsum.org/v1/tree/" + hashlib.sha256(probe.public_key).hexdigest()
    signer = Ed25519NoteSigner(origin, seed)
    assert signer.vkey == case["vkey_derived"]
    verifier = parse_vkey(case["vkey_derived"])
    cp = open_checkpoint(case["signed_checkpoint"], verifier)
    assert cp.origin == origin
    assert cp.size == 10
    assert cp.extensions == ()
    assert sign_checkpoint(cp, signer) == case["signed_checkpoint"].encode()


@pytest.mark.vectors
def test_rekor_v1_old_checkpoint_needs_its_origin(vectors: dict[str, Any]) -> None:
    case = vectors["ecdsa_notes"][0]
    verifier = parse_vkey(case["vkey_formats_style"])
    cp = open_checkpoint(case["signed_note"], verifier, origin="Rekor")
    assert cp.size == 798034
    assert cp.root == base64.b64decode("f+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=")
    with pytest.raises(VerificationError, match="origin 'Rekor' is not the expected"):
        open_checkpoint(case["signed_note"], verifier)


@pytest.mark.vectors
def test_rfc6962_rome_checkpoint(vectors: dict[str, Any]) -> None:
    case = vectors["rfc6962_type5_notes"][0]
    cp = open_checkpoint(case["signed_note"], parse_vkey(case["vkey"]))
    assert cp.origin == "rome.ct.filippo.io/2024h1"
    assert cp.size == case["decoded"]["tree_size"]


@pytest.mark.vectors
def test_alpha3_log_and_three_witnesses(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["cosignature_v1"], "rekor-v2-staging-alpha3-witnessed")
    spki = base64.b64decode(case["log_public_key_der_b64"])
    log_signer_name = case["log_vkey_derived"].split("+")[0]
    assert format_vkey(log_signer_name, spki[-32:]) == case["log_vkey_derived"]
    log = parse_vkey(case["log_vkey_derived"])
    cp = open_checkpoint(case["cosigned_checkpoint"], log)
    assert (cp.origin, cp.size) == ("log2025-alpha3.rekor.sigstage.dev", 4026479)

    witnesses = [parse_vkey(c["witness_vkey"]) for c in case["decoded_cosignatures"]]
    names = verify_cosignatures(case["cosigned_checkpoint"], witnesses, 3)
    assert names == [w.name for w in witnesses]
    result = cosignatures_result(case["cosigned_checkpoint"], witnesses, 3)
    assert result.ok
    assert set(result.witnesses.values()) == {1778700214}
    assert result.checkpoint == cp

    # One bit of any cosignature flipped: the note is invalid (a known key's bad signature).
    for victim in range(1, 4):
        note = parse_note(case["cosigned_checkpoint"])
        sig = note.signatures[victim]
        changed = bytearray(sig.signature)
        changed[20] ^= 0x01
        note.signatures[victim] = Signature(sig.name, sig.key_id, bytes(changed))
        with pytest.raises(SignatureError, match=sig.name):
            verify_cosignatures(format_note(note), witnesses, 1)


@pytest.mark.vectors
def test_derived_witness_cosigns_byte_for_byte(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["cosignature_v1"], "derived-witness-testkey-cosig")
    seed = base64.b64decode(case["witness_skey_note_format"].rsplit("+", 1)[1])[1:]
    cosigner = Ed25519CosignatureSigner("witness", seed)
    log_signed = case["cosigned_checkpoint"].replace(case["cosignature_line"], "")
    cosigned = cosign_checkpoint(log_signed, cosigner, timestamp=case["timestamp"])
    assert cosigned == case["cosigned_checkpoint"].encode()
    witness = parse_vkey(case["witness_vkey_cosig_type4"])
    assert verify_cosignatures(cosigned, [witness], 1) == ["witness"]
    log_vkey = _by_id(vectors["witness_add_checkpoint"], "witness-monkeys-5-to-8")["log_vkey"]
    assert open_checkpoint(cosigned, parse_vkey(log_vkey)).size == 8


@pytest.mark.vectors
def test_witness_add_checkpoint_monkeys(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["witness_add_checkpoint"], "witness-monkeys-5-to-8")
    log = parse_vkey(case["log_vkey"])
    old = open_checkpoint(case["checkpoint_size5"], log)
    new = open_checkpoint(case["checkpoint_size8"], log)
    assert (old.origin, old.size, new.size) == ("monkeys", 5, 8)
    proof = [bytes.fromhex(h) for h in case["consistency_proof_5_to_8_hex"]]
    merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    # The checkpoints re-sign byte for byte with the monkeys test key.
    pairs = [p for group in vectors["test_keypairs"] for p in group["pairs"]]
    pair = next(p for p in pairs if p["vkey"] == case["log_vkey"])
    signer = parse_skey(pair["skey"])
    assert sign_checkpoint(old, signer) == case["checkpoint_size5"].encode()
    assert sign_checkpoint(new, signer) == case["checkpoint_size8"].encode()


# --------------------------------------------------------------------------------------------
# Format and parse


def test_round_trip_with_extensions() -> None:
    cp = Checkpoint("example.com/log", 12345, ROOT, ("ext one", "ext two"))
    text = format_checkpoint_text(cp)
    assert text == f"example.com/log\n12345\n{ROOT_B64}\next one\next two\n"
    assert parse_checkpoint_text(text) == cp


def test_empty_tree() -> None:
    cp = Checkpoint("example.com/log", 0, merkle.EMPTY_ROOT)
    assert parse_checkpoint_text(format_checkpoint_text(cp)) == cp
    assert format_checkpoint_text(cp).split("\n")[1] == "0"


def test_max_size() -> None:
    text = f"o\n{MAX_TREE_SIZE}\n{ROOT_B64}\n"
    assert parse_checkpoint_text(text).size == MAX_TREE_SIZE
    with pytest.raises(MalformedError, match="64 bits"):
        parse_checkpoint_text(f"o\n{MAX_TREE_SIZE + 1}\n{ROOT_B64}\n")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"o\n01\n{ROOT_B64}\n", "canonical decimal"),  # checkpoint_leading_zero_size
        (f"o\n00\n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n+1\n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n-1\n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n1_0\n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n 1\n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n1 \n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n\u0663\n{ROOT_B64}\n", "canonical decimal"),  # Arabic-Indic digit three
        (f"o\n0x10\n{ROOT_B64}\n", "canonical decimal"),
        (f"o\n\n{ROOT_B64}\n", "canonical decimal"),
        (f"\n1\n{ROOT_B64}\n", "origin is empty"),
        (f"o\n1\n{ROOT_B64}", "end in a newline"),
        (f"o\n1\n{ROOT_B64}\n\n", "empty extension"),
        (f"o\n1\n{ROOT_B64}\next\n\nmore\n", "empty extension"),
        ("o\n1\n", "fewer than three"),
        (f"o\r\n1\n{ROOT_B64}\n", "control character"),
        (f"o\n1\r\n{ROOT_B64}\n", "control character"),
        (f"o\n1\n{ROOT_B64} \n", "base64"),  # checkpoint_trailing_space_root
        (f"o\n1\n{ROOT_B64.rstrip('=')}\n", "base64"),  # no padding
        (f"o\n1\n{base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode()}\n", "base64"),
        (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "31 bytes"),
        (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "33 bytes"),
        (f"o\n1\n{base64.b64encode(bytes(12)).decode()}\n", "12 bytes"),
        (f"o\n1\n{ROOT_B64[:-2]}B=\n", "canonical base64"),  # non-zero unused bits
        (f" o\n1\n{ROOT_B64}\n", "surrounding spaces"),
        (f"o \n1\n{ROOT_B64}\n", "surrounding spaces"),
    ],
)
def test_non_canonical_checkpoint_text(text: str, reason: str) -> None:
    with pytest.raises(MalformedError, match=reason):
        parse_checkpoint_text(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": "", "size": 1, "root": ROOT},
        {"origin": "a\nb", "size": 1, "root": ROOT},
        {"origin": "o", "size": -1, "root": ROOT},
        {"origin": "o", "size": MAX_TREE_SIZE + 1, "root": ROOT},
        {"origin": "o", "size": True, "root": ROOT},
        {"origin": "o", "size": 1, "root": ROOT[:31]},
        {"origin": "o", "size": 1, "root": ROOT, "extensions": ("",)},
        {"origin": "o", "size": 1, "root": ROOT, "extensions": ("a\nb",)},
    ],
)
def test_checkpoint_value_checks(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MalformedError):
        Checkpoint(**kwargs)


# --------------------------------------------------------------------------------------------
# Sign, open, cosign


@pytest.fixture
def log_signer() -> Ed25519NoteSigner:
    return Ed25519NoteSigner("example.com/log", bytes([1]) * 32)


def _witnesses(n: int) -> list[Ed25519CosignatureSigner]:
    return [Ed25519CosignatureSigner(f"w{i}.example", bytes([50 + i]) * 32) for i in range(n)]


def test_sign_and_open(log_signer: Ed25519NoteSigner) -> None:
    cp = Checkpoint("example.com/log", 7, ROOT, ("ext",))
    signed = sign_checkpoint(cp, log_signer)
    assert open_checkpoint(signed, log_signer.verifier()) == cp
    assert open_checkpoint(signed, log_signer.verifier(), origin="example.com/log") == cp


def test_open_refuses_other_origin_key_and_text(log_signer: Ed25519NoteSigner) -> None:
    verifier = log_signer.verifier()
    other_origin = sign_checkpoint(Checkpoint("example.com/other", 7, ROOT), log_signer)
    with pytest.raises(VerificationError, match="not the expected origin"):
        open_checkpoint(other_origin, verifier)
    signed = sign_checkpoint(Checkpoint("example.com/log", 7, ROOT), log_signer)
    with pytest.raises(VerificationError, match="not the expected origin"):
        open_checkpoint(signed, verifier, origin="example.com/else")
    stranger = Ed25519NoteSigner("example.com/log", bytes([2]) * 32)
    with pytest.raises(SignatureError, match="no verifiable signatures"):
        open_checkpoint(signed, stranger.verifier())
    not_a_checkpoint = sign_note("example.com/log\nhello\nroot\n", [log_signer])
    with pytest.raises(MalformedError, match="canonical decimal"):
        open_checkpoint(not_a_checkpoint, verifier)


def test_open_every_bit_flip_fails(log_signer: Ed25519NoteSigner) -> None:
    signed = sign_checkpoint(Checkpoint("example.com/log", 7, ROOT), log_signer)
    note = parse_note(signed)
    sig = note.signatures[0]
    for bit in range(0, 512, 5):
        changed = bytearray(sig.signature)
        changed[bit // 8] ^= 1 << (bit % 8)
        bad = format_note(Note(note.text, [Signature(sig.name, sig.key_id, bytes(changed))]))
        with pytest.raises(SignatureError, match="invalid signature"):
            open_checkpoint(bad, log_signer.verifier())
    # A changed root (same signature) fails too.
    tampered = signed.replace(base64.b64encode(ROOT), base64.b64encode(bytes(32)))
    with pytest.raises(SignatureError):
        open_checkpoint(tampered, log_signer.verifier())


def test_k_of_n_witness_policy(log_signer: Ed25519NoteSigner) -> None:
    signed = sign_checkpoint(Checkpoint("example.com/log", 7, ROOT), log_signer)
    w = _witnesses(3)
    verifiers = [x.verifier() for x in w]
    two = cosign_checkpoint(signed, w[0], timestamp=100)
    two = cosign_checkpoint(two, w[2], timestamp=101)
    assert verify_cosignatures(two, verifiers, 2) == ["w0.example", "w2.example"]
    assert verify_cosignatures(two, verifiers, 1) == ["w0.example", "w2.example"]
    with pytest.raises(VerificationError, match="2 of the required 3"):
        verify_cosignatures(two, verifiers, 3)
    result = cosignatures_result(two, verifiers, 3)
    assert not result
    assert result.witnesses == {"w0.example": 100, "w2.example": 101}
    # The log signature is still there and valid.
    assert open_checkpoint(two, log_signer.verifier()).size == 7
    # No witness signature at all.
    with pytest.raises(VerificationError, match="0 of the required 1"):
        verify_cosignatures(signed, verifiers, 1)


def test_witness_policy_misuse_and_unknowns(log_signer: Ed25519NoteSigner) -> None:
    signed = sign_checkpoint(Checkpoint("example.com/log", 7, ROOT), log_signer)
    w = _witnesses(2)
    verifiers = [x.verifier() for x in w]
    with pytest.raises(ValueError, match="threshold 0"):
        verify_cosignatures(signed, verifiers, 0)
    with pytest.raises(ValueError, match="threshold 3"):
        verify_cosignatures(signed, verifiers, 3)
    with pytest.raises(ValueError, match="threshold 1"):
        verify_cosignatures(signed, [], 1)
    # A cosignature by a witness outside the policy is ignored.
    stranger = Ed25519CosignatureSigner("stranger.example", bytes([99]) * 32)
    cosigned = cosign_checkpoint(signed, stranger, timestamp=5)
    cosigned = cosign_checkpoint(cosigned, w[1], timestamp=6)
    assert verify_cosignatures(cosigned, verifiers, 1) == ["w1.example"]


def test_one_witness_with_two_keys_counts_once(log_signer: Ed25519NoteSigner) -> None:
    signed = sign_checkpoint(Checkpoint("example.com/log", 7, ROOT), log_signer)
    first = Ed25519CosignatureSigner("w.example", bytes([10]) * 32)
    second = Ed25519CosignatureSigner("w.example", bytes([11]) * 32)
    other = Ed25519CosignatureSigner("v.example", bytes([12]) * 32)
    both = cosign_checkpoint(signed, first, timestamp=1)
    both = cosign_checkpoint(both, second, timestamp=2)
    verifiers = [first.verifier(), second.verifier(), other.verifier()]
    assert verify_cosignatures(both, verifiers, 1) == ["w.example"]
    with pytest.raises(VerificationError, match="1 of the required 2"):
        verify_cosignatures(both, verifiers, 2)


def test_cosignature_over_other_checkpoint_fails(log_signer: Ed25519NoteSigner) -> None:
    w = _witnesses(1)[0]
    a = sign_checkpoint(Checkpoint("example.com/log", 7, ROOT), log_signer)
    b = sign_checkpoint(Checkpoint("example.com/log", 8, ROOT), log_signer)
    stolen = parse_note(cosign_checkpoint(a, w, timestamp=1)).signatures[1]
    forged = append_signatures(b, [stolen])
    with pytest.raises(SignatureError, match=r"w0\.example\+"):
        verify_cosignatures(forged, [w.verifier()], 1)


def test_cosign_refuses_non_checkpoint(log_signer: Ed25519NoteSigner) -> None:
    note = sign_note("not\na checkpoint\n", [log_signer])
    with pytest.raises(MalformedError):
        cosign_checkpoint(note, _witnesses(1)[0], timestamp=1)


_LINE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(
    origin=_LINE.filter(lambda s: s == s.strip()),
    size=st.integers(min_value=0, max_value=MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3).map(tuple),
)
@settings(max_examples=200, deadline=None)
def test_property_checkpoint_text_round_trips(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    assert parse_checkpoint_text(format_checkpoint_text(cp)) == cp


@given(st.text(max_size=120))
@settings(max_examples=300, deadline=None)
def test_property_parse_checkpoint_raises_only_malformed(text: str) -> None:
    try:
        cp = parse_checkpoint_text(text)
    except MalformedError:
        return
    assert format_checkpoint_text(cp) == text
