"""C2SP signed notes: vectors from golang.org/x/mod, C2SP, Rekor and static-ct, plus strictness."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedError, SignatureError, TooLargeError
from ledger.tlog.note import (
    MAX_NOTE_BYTES,
    MAX_NOTE_SIGNATURES,
    CosignatureV1Verifier,
    ECDSAVerifier,
    Ed25519CosignatureSigner,
    Ed25519NoteSigner,
    Ed25519Verifier,
    Note,
    RFC6962Verifier,
    Signature,
    append_signatures,
    cosignature_message,
    format_note,
    format_skey,
    format_vkey,
    generate_signer,
    is_valid_key_name,
    parse_note,
    parse_skey,
    parse_vkey,
    sign_note,
    verify_note,
    verify_note_result,
)
from tests.conftest import load_vector

VECTORS = "notes/signed_note_checkpoint_cosignature_vectors.json"

# The golang.org/x/mod example key, also checked against the vector file below. It is spelled
# out here because the substring/increment cases are parametrised at collection time.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
EM = "\u2014"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = load_vector(VECTORS)
    return data


def _by_id(items: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    return next(item for item in items if item["id"] == ident)


def _signer(name: str = "example.com/log", fill: int = 7) -> Ed25519NoteSigner:
    return Ed25519NoteSigner(name, bytes([fill]) * 32)


# --------------------------------------------------------------------------------------------
# Vectors: golang.org/x/mod sumdb/note


@pytest.mark.vectors
def test_peterneumann_signs_deterministically(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-peterneumann")
    assert case["vkey"] == PETER_VKEY
    signer = parse_skey(case["skey"])
    assert signer.name == "PeterNeumann"
    assert f"{signer.key_id:08x}" == "c74f20a3"
    assert signer.vkey == case["vkey"]
    assert signer.skey == case["skey"]
    assert case["text"] == PETER_TEXT
    assert sign_note(case["text"], [signer]) == case["signed_note"].encode("utf-8")


@pytest.mark.vectors
def test_peterneumann_verifies(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-peterneumann")
    note = verify_note(case["signed_note"], [parse_vkey(case["vkey"])])
    assert note.text == case["text"]
    assert [s.name for s in note.signatures] == ["PeterNeumann"]
    assert format_note(note) == case["signed_note"].encode("utf-8")


@pytest.mark.vectors
def test_two_signers_expect_matrix(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-two-signers")
    peter, enoch = (parse_vkey(v) for v in case["vkeys"])
    signed = case["signed_note"]

    # verifiers=[peter]: valid; Peter verified, Enoch unknown (ignored).
    result = verify_note_result(signed, [peter])
    assert result.ok
    assert result.verified_names == ["PeterNeumann"]
    assert [s.name for s in result.unknown] == ["EnochRoot"]
    assert verify_note(signed, [peter]).text == PETER_TEXT

    # verifiers=[peter, enoch]: both verified.
    result = verify_note_result(signed, [peter, enoch])
    assert result.verified_names == ["PeterNeumann", "EnochRoot"]
    assert not result.unknown
    assert not result.failed

    # verifiers=[]: no verifiable signatures.
    with pytest.raises(SignatureError, match="note has no verifiable signatures"):
        verify_note(signed, [])


@pytest.mark.vectors
def test_two_signers_enoch_skey_reproduces(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-two-signers")
    enoch = parse_skey(case["enoch_skey_derived"])
    assert enoch.vkey == case["vkeys"][1]
    peter = parse_skey(_by_id(vectors["ed25519_notes"], "gomod-peterneumann")["skey"])
    assert sign_note(PETER_TEXT, [peter, enoch]) == case["signed_note"].encode("utf-8")


@pytest.mark.vectors
def test_two_signers_bad_peter_signature(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-two-signers")
    peter, enoch = (parse_vkey(v) for v in case["vkeys"])
    text_part, sig_part = case["signed_note"].split("\n\n")
    peter_line, enoch_line = sig_part.splitlines(keepends=True)
    # golang.org/x/mod inserts 'ABCD' at byte 60 of Peter's signature line.
    raw = peter_line.encode("utf-8")
    bad_line = (raw[:60] + b"ABCD" + raw[60:]).decode("utf-8")
    bad = f"{text_part}\n\n{bad_line}{enoch_line}"
    assert parse_note(bad).signatures[0].key_id == peter.key_id  # still Peter's key
    with pytest.raises(SignatureError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        verify_note(bad, [peter, enoch])
    # Unknown to the verifier set, the bad signature is ignored and Enoch's verifies.
    assert verify_note(bad, [enoch]).text == PETER_TEXT


@pytest.mark.vectors
def test_two_signers_101_signature_lines(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-two-signers")
    peter = parse_vkey(case["vkeys"][0])
    peter_line = case["signed_note"].split("\n\n")[1].splitlines(keepends=True)[0]
    at_limit = PETER_TEXT + "\n" + peter_line * MAX_NOTE_SIGNATURES
    assert verify_note(at_limit, [peter]).text == PETER_TEXT  # duplicates are dropped
    over = PETER_TEXT + "\n" + peter_line * (MAX_NOTE_SIGNATURES + 1)
    with pytest.raises(MalformedError, match="101 signature lines"):
        parse_note(over)
    with pytest.raises(MalformedError):
        verify_note(over, [peter])


def _malformed_messages(signed: str, text: str) -> dict[str, bytes]:
    sig_b64 = signed.split("\n\n")[1].split(" ", 2)[2]
    return {
        "text only (no blank line, no sigs)": text.encode(),
        "text + '\\n' (no signature lines)": (text + "\n").encode(),
        "last signature line without trailing newline": signed[:-1].encode(),
        "leading 0x01 control byte": b"\x01" + signed.encode(),
        "leading 0xff (invalid UTF-8)": b"\xff" + signed.encode(),
        "signature line with space in key name": f"{text}\n{EM} Bad Name {sig_b64}".encode(),
        "extra non-signature line after signatures": (signed + "Unexpected line.\n").encode(),
    }


@pytest.mark.vectors
def test_gomod_malformed_cases(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-malformed")
    good = _by_id(vectors["ed25519_notes"], "gomod-peterneumann")
    messages = _malformed_messages(good["signed_note"], good["text"])
    described = case["cases_all_must_be_rejected_as_malformed"]
    assert len(messages) == len(described)
    for description, message in zip(described, messages.values(), strict=True):
        with pytest.raises(MalformedError):
            parse_note(message)
        with pytest.raises(MalformedError):
            verify_note(message, [parse_vkey(good["vkey"])])
        assert description  # every listed case has a constructed message


@pytest.mark.vectors
def test_gomod_bad_vkeys(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "gomod-bad-vkeys")
    wrong_length, unknown_alg = (item.split(" ")[0] for item in case["must_reject"][:2])
    # Go reads the padded "BADKEY==" tail as a 37-byte key; here it is already non-canonical.
    with pytest.raises(MalformedError, match="not 32|not canonical"):
        parse_vkey(wrong_length)
    with pytest.raises(MalformedError, match="unknown type 0x65"):
        parse_vkey(unknown_alg)


@pytest.mark.vectors
def test_vkey_every_substring_and_increment_rejected() -> None:
    assert parse_vkey(PETER_VKEY).key_id == 0xC74F20A3
    n = len(PETER_VKEY)
    for i in range(n):
        for j in range(i + 1, n + 1):
            if (i, j) == (0, n):
                continue
            with pytest.raises(MalformedError):
                parse_vkey(PETER_VKEY[i:j])
    raw = PETER_VKEY.encode("ascii")
    for i in range(n):
        bumped = raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]
        with pytest.raises(MalformedError):
            parse_vkey(bumped.decode("ascii"))


@pytest.mark.vectors
def test_c2sp_signed_note_example(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["ed25519_notes"], "c2sp-signed-note-example")
    verifier = parse_vkey(case["vkey"])
    assert isinstance(verifier, Ed25519Verifier)
    assert verifier.vkey == case["vkey"]
    note = verify_note(case["signed_note"], [verifier])
    assert note.text == "This is an example message.\n"


# --------------------------------------------------------------------------------------------
# Vectors: ECDSA (Rekor v1) and RFC 6962 (static-ct-api)


@pytest.mark.vectors
def test_ecdsa_rekor_v1(vectors: dict[str, Any]) -> None:
    case = vectors["ecdsa_notes"][0]
    spki = base64.b64decode(case["public_key_der_spki_b64"])
    direct = ECDSAVerifier("rekor.sigstore.dev", spki)
    assert f"{direct.key_id:08x}" == case["key_id"]
    assert direct.vkey == case["vkey_formats_style"]
    parsed = parse_vkey(case["vkey_formats_style"])
    assert isinstance(parsed, ECDSAVerifier)
    note = verify_note(case["signed_note"], [parsed])
    assert note.text.startswith("Rekor\n798034\n")
    flipped = _flip_signature_bit(case["signed_note"], 0, 20)
    with pytest.raises(SignatureError, match=r"rekor\.sigstore\.dev\+c0d23d6a"):
        verify_note(flipped, [parsed])


@pytest.mark.vectors
def test_rfc6962_rome(vectors: dict[str, Any]) -> None:
    case = vectors["rfc6962_type5_notes"][0]
    spki = base64.b64decode(case["public_key_der_spki_b64"])
    verifier = RFC6962Verifier("rome.ct.filippo.io/2024h1", spki)
    assert f"{verifier.key_id:08x}" == case["decoded"]["key_id"]
    assert verifier.vkey == case["vkey"]
    parsed = parse_vkey(case["vkey"])
    assert isinstance(parsed, RFC6962Verifier)
    result = verify_note_result(case["signed_note"], [parsed])
    assert result.ok
    assert result.verified[0].timestamp == case["decoded"]["timestamp_ms"]
    assert result.note.text.split("\n")[1] == str(case["decoded"]["tree_size"])

    note = parse_note(case["signed_note"])
    sig = note.signatures[0].signature
    text = note.text.encode()
    assert parsed.verify(text, sig)
    # The tree head signature does not cover the origin or extension lines: they are bound here.
    assert not parsed.verify(text + b"extension\n", sig)
    assert not parsed.verify(text.replace(b"rome.ct.filippo.io/2024h1", b"other.example"), sig)
    assert not parsed.verify(text.replace(b"115474666", b"115474667"), sig)
    for bit in range(len(sig) * 8):
        changed = bytearray(sig)
        changed[bit // 8] ^= 1 << (bit % 8)
        assert not parsed.verify(text, bytes(changed)), bit


# --------------------------------------------------------------------------------------------
# Vectors: cosignature/v1 and key pairs


@pytest.mark.vectors
def test_cosignature_v1_alpha3_witnesses(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["cosignature_v1"], "rekor-v2-staging-alpha3-witnessed")
    witnesses = [parse_vkey(c["witness_vkey"]) for c in case["decoded_cosignatures"]]
    assert all(isinstance(w, CosignatureV1Verifier) for w in witnesses)
    log = parse_vkey(case["log_vkey_derived"])
    result = verify_note_result(case["cosigned_checkpoint"], [log, *witnesses])
    assert result.ok
    assert len(result.verified) == 4
    stamps = {item.name: item.timestamp for item in result.verified}
    assert stamps[log.name] is None
    text = result.note.text
    for decoded, witness in zip(case["decoded_cosignatures"], witnesses, strict=True):
        assert f"{witness.key_id:08x}" == decoded["key_id"]
        assert stamps[witness.name] == decoded["timestamp"]
        assert cosignature_message(text, decoded["timestamp"]).decode() == decoded["signed_message"]
        sig = next(s for s in result.note.signatures if s.name == witness.name)
        assert base64.b64encode(sig.signature[8:]).decode() == decoded["signature_b64"]
        assert CosignatureV1Verifier.signature_timestamp(sig.signature) == decoded["timestamp"]


@pytest.mark.vectors
def test_cosignature_v1_derived_witness(vectors: dict[str, Any]) -> None:
    case = _by_id(vectors["cosignature_v1"], "derived-witness-testkey-cosig")
    note_signer = parse_skey(case["witness_skey_note_format"])
    assert note_signer.vkey == case["witness_vkey_note_type1"]
    seed = base64.b64decode(case["witness_skey_note_format"].rsplit("+", 1)[1])[1:]
    cosigner = Ed25519CosignatureSigner("witness", seed)
    assert cosigner.vkey == case["witness_vkey_cosig_type4"]
    assert f"{cosigner.key_id:08x}" == case["key_id_type4"]
    text = "monkeys\n8\nV8K9aklZ4EPB+RMOk1/8VsJUdFZR77GDtZUQq84vSbo=\n"
    assert cosignature_message(text, case["timestamp"]).decode() == case["signed_message"]
    sig = cosigner.sign(text, timestamp=case["timestamp"])
    line = format_note(Note(text, [sig])).decode().split("\n\n")[1]
    assert line == case["cosignature_line"]
    log_note = case["cosigned_checkpoint"].split(case["cosignature_line"])[0]
    assert append_signatures(log_note, [sig]).decode() == case["cosigned_checkpoint"]
    result = verify_note_result(case["cosigned_checkpoint"], [parse_vkey(cosigner.vkey)])
    assert result.verified[0].timestamp == case["timestamp"]
    # The type-0x01 key of the same seed is a different key id: it does not match.
    with pytest.raises(SignatureError, match="no verifiable signatures"):
        verify_note(case["cosigned_checkpoint"], [note_signer.verifier()])


@pytest.mark.vectors
def test_keypairs_derive_vkeys(vectors: dict[str, Any]) -> None:
    pairs = [pair for group in vectors["test_keypairs"] for pair in group["pairs"]]
    assert len(pairs) == 7
    for pair in pairs:
        signer = parse_skey(pair["skey"])
        assert signer.vkey == pair["vkey"]
        assert signer.skey == pair["skey"]
        verifier = parse_vkey(pair["vkey"])
        assert verify_note(sign_note("hello\n", [signer]), [verifier]).text == "hello\n"


# --------------------------------------------------------------------------------------------
# Parse / format strictness


def _flip_signature_bit(note: str, line: int, bit: int) -> str:
    parsed = parse_note(note)
    sig = parsed.signatures[line]
    changed = bytearray(sig.signature)
    changed[bit // 8] ^= 1 << (bit % 8)
    parsed.signatures[line] = Signature(sig.name, sig.key_id, bytes(changed))
    return format_note(parsed).decode()


def test_round_trip_with_blank_lines_in_text() -> None:
    text = "first\n\nthird after a blank line\n\n\nsixth\n"
    signers = [_signer("a.example", 1), _signer("b.example", 2)]
    signed = sign_note(text, signers)
    note = parse_note(signed)
    assert note.text == text
    assert format_note(note) == signed
    assert verify_note(signed, [s.verifier() for s in signers]).text == text


def test_str_and_bytes_inputs_agree() -> None:
    signer = _signer()
    signed = sign_note("x\n", [signer])
    assert parse_note(signed) == parse_note(signed.decode())


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"text\r\n\n\xe2\x80\x94 a AAAAAAA=\n", "control character"),
        ("text\n\n\u2014 a AAAAAAA=\r\n", "control character"),
        ("text\n\n\u2014 a AAAAAAA= \n", "base64"),  # trailing space
        ("text\n\n\u2014 a  AAAAAAA=\n", "base64"),  # two spaces
        ("text\n\n\u2014 a AAAAAAB=\n", "canonical"),  # non-zero unused bits
        ("text\n\n\u2014 a AAAAAA==\n", "shorter than 5"),
        ("text\n\n\u2014 a AAAAAAA\n", "base64"),  # no padding
        ("text\n\n\u2014 a _-AAAAA=\n", "base64"),  # URL-safe alphabet
        ("text\n\n\u2014 a\n", "no signature"),
        ("text\n\n\u2014 a \n", "no signature"),
        ("text\n\n\u2014  AAAAAAA=\n", "invalid key name"),
        ("text\n\n\u2014 a+b AAAAAAA=\n", "invalid key name"),
        ("text\n\n\u2014 a\u00a0b AAAAAAA=\n", "invalid key name"),
        ("text\n\n\u2014 a\u3000b AAAAAAA=\n", "invalid key name"),
        ("text\n\n- a AAAAAAA=\n", "em dash"),
        ("text\n\n\u2014a AAAAAAA=\n", "em dash"),
        ("text\n\n\u2014 a AAAAAAA=\n\u2014 b AAAAAAA=", "newline"),
        ("text\n\n\n", "no signature lines"),
        ("text\x00\n\n\u2014 a AAAAAAA=\n", "control character"),
        ("text\t\n\n\u2014 a AAAAAAA=\n", "control character"),
        ("", "no blank line"),
    ],
)
def test_malformed_notes(message: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedError, match=reason):
        parse_note(message)


def test_lone_surrogate_is_malformed() -> None:
    with pytest.raises(MalformedError, match="UTF-8"):
        parse_note("text\ud800\n\n\u2014 a AAAAAAA=\n")


def test_oversize_note() -> None:
    line = "\u2014 a AAAAAAA=\n"
    filler = "x" * (MAX_NOTE_BYTES - len(line.encode()) - 2) + "\n\n"
    assert parse_note(filler + line).text.endswith("x\n")
    with pytest.raises(TooLargeError, match=str(MAX_NOTE_BYTES)):
        parse_note("x" + filler + line)


def test_every_one_bit_flip_of_an_ed25519_signature_fails() -> None:
    signer = _signer()
    signed = sign_note("origin\n1\n\n", [signer]).decode()
    verifier = signer.verifier()
    for bit in range(64 * 8):
        with pytest.raises(SignatureError, match="invalid signature"):
            verify_note(_flip_signature_bit(signed, 0, bit), [verifier])


def test_flipped_key_id_or_text_fails() -> None:
    signer = _signer()
    signed = sign_note("hello\n", [signer])
    note = parse_note(signed)
    sig = note.signatures[0]
    other_id = format_note(Note(note.text, [Signature(sig.name, sig.key_id ^ 1, sig.signature)]))
    with pytest.raises(SignatureError, match="no verifiable signatures"):
        verify_note(other_id, [signer.verifier()])
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_note(signed.replace(b"hello", b"hellp"), [signer.verifier()])


def test_duplicates_are_dropped_and_unknowns_ignored() -> None:
    signer, stranger = _signer("log", 1), _signer("stranger", 2)
    signed = sign_note("t\n", [signer, stranger])
    good = parse_note(signed).signatures[0]
    bad = Signature(good.name, good.key_id, bytes(64))
    note = Note("t\n", [good, bad, parse_note(signed).signatures[1]])
    result = verify_note_result(format_note(note), [signer.verifier()])
    assert result.ok
    assert result.verified_names == ["log"]
    assert [s.name for s in result.unknown] == ["stranger"]
    # The bad signature first: the known key's signature fails and the note is invalid.
    reversed_note = format_note(Note("t\n", [bad, good]))
    result = verify_note_result(reversed_note, [signer.verifier()])
    assert not result
    label = rf"invalid signature for key log\+{signer.key_id:08x}"
    with pytest.raises(SignatureError, match=label):
        verify_note(reversed_note, [signer.verifier()])


def test_bad_known_signature_beats_a_good_one() -> None:
    good_signer, other = _signer("a", 1), _signer("b", 2)
    signed = sign_note("t\n", [good_signer, other])
    flipped = _flip_signature_bit(signed.decode(), 1, 3)
    with pytest.raises(SignatureError, match=r"invalid signature for key b\+"):
        verify_note(flipped, [good_signer.verifier(), other.verifier()])
    assert verify_note(flipped, [good_signer.verifier()]).text == "t\n"


def test_ambiguous_verifiers_are_refused() -> None:
    signer = _signer()
    with pytest.raises(ValueError, match="share"):
        verify_note(sign_note("t\n", [signer]), [signer.verifier(), signer.verifier()])


def test_sign_note_misuse() -> None:
    signer = _signer()
    with pytest.raises(ValueError, match="newline"):
        sign_note("no newline", [signer])
    with pytest.raises(ValueError, match="control"):
        sign_note("bad\rtext\n", [signer])
    with pytest.raises(ValueError, match="at least one"):
        sign_note("t\n", [])
    with pytest.raises(ValueError, match="key name"):
        Ed25519NoteSigner("bad name", bytes(32))
    with pytest.raises(ValueError, match="32"):
        Ed25519NoteSigner("name", bytes(31))


def test_key_names() -> None:
    assert is_valid_key_name("sigsum.org/v1/tree/abc")
    assert is_valid_key_name("rekor.sigstore.dev")
    for bad in ["", "a b", "a+b", "a\u2003b", "a\nb", "a\x01b"]:
        assert not is_valid_key_name(bad)


# --------------------------------------------------------------------------------------------
# Keys


def test_generated_signer_round_trips() -> None:
    signer = generate_signer("example.com/log")
    again = parse_skey(signer.skey)
    assert again.vkey == signer.vkey
    assert "PRIVATE" not in repr(signer)
    verifier = parse_vkey(signer.vkey)
    assert verify_note(sign_note("a\n", [again]), [verifier]).text == "a\n"
    assert generate_signer("example.com/log").vkey != signer.vkey


def test_format_vkey_and_key_id_rule() -> None:
    signer = _signer("name")
    pub = signer.public_key
    vkey = format_vkey("name", pub)
    assert vkey == signer.vkey
    digest = hashlib.sha256(b"name\n\x01" + pub).digest()
    assert vkey.split("+")[1] == digest[:4].hex()
    assert vkey.split("+")[2].startswith("A")
    with pytest.raises(ValueError, match="32"):
        format_vkey("name", pub[:31])
    with pytest.raises(ValueError, match="key name"):
        format_vkey("na+me", pub)


@pytest.mark.parametrize(
    "skey",
    [
        "PRIVATE+KEY+",
        "PRIVATE+KEY+name",
        "PRIVATE+KEY+name+0000000",
        "private+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
        "PRIVATE+KEY+Log+2271c622+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",  # id
        "PRIVATE+KEY+Log+2271C621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",  # upper hex
        "PRIVATE+KEY+Log+2271c621+AtEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",  # type 0x02
        "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKg==",  # short
        "PRIVATE+KEY+Lo g+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
    ],
)
def test_bad_skeys(skey: str) -> None:
    with pytest.raises(MalformedError):
        parse_skey(skey)


def test_format_skey_matches_vector_shape() -> None:
    seed = bytes(range(32))
    skey = format_skey("Log", seed)
    assert skey.startswith("PRIVATE+KEY+Log+")
    assert parse_skey(skey).vkey == Ed25519NoteSigner("Log", seed).vkey


def _p256_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, spki


def test_ecdsa_sign_verify_and_vkey_round_trip() -> None:
    key, spki = _p256_key()
    verifier = ECDSAVerifier("ecdsa.example", spki)
    assert verifier.key_id == int.from_bytes(hashlib.sha256(spki).digest()[:4], "big")
    text = "ecdsa.example\n3\n" + base64.b64encode(bytes(32)).decode() + "\n"
    der = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    signed = format_note(Note(text, [Signature("ecdsa.example", verifier.key_id, der)]))
    parsed = parse_vkey(verifier.vkey)
    assert verify_note(signed, [parsed]).text == text
    with pytest.raises(SignatureError):
        verify_note(_flip_signature_bit(signed.decode(), 0, 100), [parsed])


def test_ecdsa_vkey_rejects_other_curves_and_non_der() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    spki = p384.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(MalformedError, match="P-256"):
        ECDSAVerifier("x", spki)
    with pytest.raises(MalformedError, match="SubjectPublicKeyInfo"):
        ECDSAVerifier("x", b"\x30\x00")
    _, good = _p256_key()
    with pytest.raises(MalformedError):
        ECDSAVerifier("x", good + b"\x00")
    vkey = "x+00000000+" + base64.b64encode(b"\x02" + spki).decode()
    with pytest.raises(MalformedError, match="P-256"):
        parse_vkey(vkey)


def test_cosignature_sign_verify_and_tamper() -> None:
    cosigner = Ed25519CosignatureSigner("witness.example", bytes([9]) * 32)
    verifier = parse_vkey(cosigner.vkey)
    assert isinstance(verifier, CosignatureV1Verifier)
    assert cosigner.vkey.split("+")[2].startswith("B")
    text = "log.example\n5\n" + base64.b64encode(bytes(32)).decode() + "\n"
    sig = cosigner.sign(text, timestamp=1_700_000_123)
    assert len(sig.signature) == 72
    assert verifier.verify(text.encode(), sig.signature)
    later = (1_700_000_124).to_bytes(8, "big") + sig.signature[8:]
    assert not verifier.verify(text.encode(), later)
    assert not verifier.verify(text.encode(), sig.signature[:71])
    assert not verifier.verify(text.encode(), sig.signature[8:])
    with pytest.raises(MalformedError, match="72"):
        CosignatureV1Verifier.signature_timestamp(sig.signature[:10])
    with pytest.raises(ValueError, match="uint64"):
        cosigner.sign(text, timestamp=-1)
    # The plain Ed25519 verifier of the same key does not accept a cosignature.
    plain = Ed25519Verifier("witness.example", cosigner.public_key)
    assert not plain.verify(text.encode(), sig.signature)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "+",
        "++",
        "name",
        "name+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper hex
        "PeterNeumann+c74f20a3+",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW ",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+BRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x05
    ],
)
def test_bad_vkeys(vkey: str) -> None:
    with pytest.raises(MalformedError):
        parse_vkey(vkey)


def test_format_note_misuse() -> None:
    with pytest.raises(ValueError, match="at least one"):
        format_note(Note("t\n", []))
    with pytest.raises(ValueError, match="uint32"):
        format_note(Note("t\n", [Signature("a", 1 << 32, b"x")]))
    with pytest.raises(ValueError, match="key name"):
        format_note(Note("t\n", [Signature("a b", 1, b"x")]))
    with pytest.raises(ValueError, match="newline"):
        format_note(Note("t", [Signature("a", 1, b"x")]))
    with pytest.raises(ValueError, match="at most"):
        format_note(Note("t\n", [Signature("a", i, b"x") for i in range(101)]))


def test_append_signatures_skips_present_keys() -> None:
    a, b = _signer("a", 1), _signer("b", 2)
    signed = sign_note("t\n", [a])
    both = append_signatures(signed, [a.sign("t\n"), b.sign("t\n")])
    assert [s.name for s in parse_note(both).signatures] == ["a", "b"]
    assert verify_note_result(both, [a.verifier(), b.verifier()]).verified_names == ["a", "b"]


# --------------------------------------------------------------------------------------------
# Properties

_TEXT_CHARS = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(chr(c) for c in range(0x20) if c != 0x0A),
)


@given(st.text(_TEXT_CHARS, max_size=200).map(lambda s: s + "\n"))
@settings(max_examples=150, deadline=None)
def test_property_any_text_signs_and_round_trips(text: str) -> None:
    signer = _signer("prop.example")
    signed = sign_note(text, [signer])
    note = verify_note(signed, [signer.verifier()])
    assert note.text == text
    assert format_note(note) == signed


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_property_parse_raises_only_malformed(data: bytes) -> None:
    try:
        note = parse_note(data)
    except MalformedError:
        return
    assert format_note(note) == data  # what parses is in its one canonical form


@given(st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_property_parse_vkey_raises_only_malformed(data: bytes) -> None:
    text = data.decode("latin-1")
    for candidate in (text, PETER_VKEY[:22] + text, "a+" + text):
        try:
            parse_vkey(candidate)
        except MalformedError:
            continue
