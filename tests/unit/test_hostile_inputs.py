"""Hostile inputs found by fuzzing the parsers and verifiers: each is refused with the project's
own error (a LedgerError naming what is wrong), never a library's exception, and quickly."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ledger.attestation import _x509
from ledger.attestation.policy_document import parse_policy_document
from ledger.attestation.tdx_tcb import parse_signed_json
from ledger.errors import LedgerError, MalformedError
from ledger.interop.sigstore import parse_bundle
from ledger.tlog.checkpoint import parse_checkpoint_text
from ledger.tlog.proof import parse_tlog_proof
from ledger.untrusted.x509 import load_crl, load_der_certificate, load_pem_certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str = "subject", *, exts: tuple[x509.ExtensionType, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name("issuer")).public_key(key.public_key())
        .serial_number(7).not_valid_before(datetime(2000, 1, 1, tzinfo=UTC)).not_valid_after(datetime(2099, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    for ext in exts:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


_A, _B = "1.3.6.1.4.1.3704.1.3.1", "1.3.6.1.4.1.3704.1.3.2"


def _odd_certificates() -> dict[str, bytes]:
    good = _cert()
    duplicated = _cert(exts=tuple(x509.UnrecognizedExtension(x509.ObjectIdentifier(o), b"\x02\x01\x01") for o in (_A, _B)))
    return {
        # the algorithm OID of the key is one no library knows (1.2.840.10045.2.9)
        "unknown key algorithm": _replace_once(good, bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209")),
        # an X.509 v2 version field: cryptography's InvalidVersion, not a ValueError
        "version 1": _replace_once(good, bytes.fromhex("a003020102"), bytes.fromhex("a003020101")),
        # one extension OID twice: DuplicateExtension when the extensions are first read
        "duplicate extension": _replace_once(duplicated, bytes.fromhex("060a2b060104019c78010302"), bytes.fromhex("060a2b060104019c78010301")),
        # a subject CN (UTF8String) holding the byte 0xFF: a ValueError when the name is first read
        "bad subject": good[: good.index(b"subject")] + b"\xff" + good[good.index(b"subject") + 1 :],
    }


@pytest.mark.parametrize("kind", sorted(_odd_certificates()))
def test_a_certificate_that_does_not_decode_is_malformed_wherever_it_is_read(kind: str) -> None:
    der = _odd_certificates()[kind]
    with pytest.raises(MalformedError, match="certificate"):
        load_der_certificate(der)
    with pytest.raises(MalformedError):
        load_pem_certificates(_pem(der))
    with pytest.raises(MalformedError):  # as a TEE endorsement (SEV-SNP, TDX, TPM, Nitro chains)
        _x509.parse_endorsements([_pem(der)])
    with pytest.raises(MalformedError):
        _x509.parse_endorsements([der])
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": base64.b64encode(der).decode()}, "tlogEntries": []},
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(b"\0" * 32).decode()},
                             "signature": base64.b64encode(b"sig").decode()},
    }
    with pytest.raises(MalformedError):  # in a Sigstore bundle
        parse_bundle(json.dumps(bundle).encode())


def test_a_crl_whose_issuer_does_not_decode_is_malformed() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(_name("CRLISSUER"))
           .last_update(datetime(2023, 1, 1, tzinfo=UTC)).next_update(datetime(2024, 1, 1, tzinfo=UTC))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    assert load_crl(crl).issuer == _name("CRLISSUER")
    pem = x509.load_der_x509_crl(crl).public_bytes(serialization.Encoding.PEM)
    assert load_crl(b"issuer: CRLISSUER\n" + pem).issuer == _name("CRLISSUER")  # PEM after other text too
    broken = crl[: crl.index(b"CRLISSUER")] + b"\xff" + crl[crl.index(b"CRLISSUER") + 1 :]
    with pytest.raises(MalformedError, match="CRL"):
        load_crl(broken)
    with pytest.raises(MalformedError):
        _x509.parse_endorsements([broken])


@pytest.mark.parametrize("blob", [
    b"-----BEGIN CERTIFICATE-----\n" * 20_000,  # unterminated blocks: one pass, not one scan each
    b"-----BEGIN X509 CRL-----\n-----BEGIN CERTIFICATE-----\n" * 10_000,
    b"-----BEGIN A-----\n" * 20_000,  # a block no endorsement holds
])
def test_pem_endorsements_without_complete_blocks_are_refused(blob: bytes) -> None:
    with pytest.raises(MalformedError, match="PEM"):
        _x509.parse_endorsements([blob])


def test_pem_blocks_are_still_found_among_other_text() -> None:
    der = _cert()
    blob = b"chain:\n" + _pem(der) + b"trailing words\n" + _pem(der)
    assert _x509.parse_endorsements([blob]) == ([der], [])


@pytest.mark.parametrize(("data", "needle"), [
    (b"[" * 1000, "deep"),
    ('{"version": 1, "description": "\ud800"}', "Unicode"),
    (json.dumps({"version": 1, "sev-snp": {"allowed_vmpls": [*range(5000), "x"]}}).encode(), "items"),
])
def test_hostile_policy_documents_are_refused(data: bytes | str, needle: str) -> None:
    with pytest.raises(MalformedError, match=needle):
        parse_policy_document(data)


def test_deeply_nested_tdx_collateral_is_refused() -> None:
    with pytest.raises(MalformedError, match="deep"):
        parse_signed_json(b'{"tcbInfo":' + b"[" * 1000)


_HUGE = "1" * 4301  # past CPython's limit for int(): a ValueError if ever converted


def test_numbers_too_long_for_64_bits_are_refused_before_conversion() -> None:
    with pytest.raises(MalformedError, match="decimal"):
        parse_checkpoint_text(f"origin\n{_HUGE}\n{base64.b64encode(bytes(32)).decode()}\n")
    with pytest.raises(MalformedError, match="index"):
        parse_tlog_proof(f"c2sp.org/tlog-proof@v1\nindex {_HUGE}\n")
    # 2**64 - 1 still parses; 2**64 is named as too big
    root = base64.b64encode(bytes(32)).decode()
    assert parse_checkpoint_text(f"origin\n{2**64 - 1}\n{root}\n").size == 2**64 - 1
    with pytest.raises(MalformedError, match="64 bits"):
        parse_checkpoint_text(f"origin\n{2**64}\n{root}\n")


def test_a_bundle_media_type_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(MalformedError, match="mediaType"):
        parse_bundle(json.dumps({"mediaType": {}, "verificationMaterial": {}}).encode())


def test_a_rekor_entry_time_beyond_json_doubles_is_refused() -> None:
    from ledger.interop.rekor import RekorV1Entry, rekor_v1_set_payload  # noqa: PLC0415

    fields = {f: None for f in RekorV1Entry.__dataclass_fields__}
    fields.update(body=b"{}", integrated_time=2**53 + 1, log_id=bytes(32), log_index=1)
    with pytest.raises(MalformedError, match="integratedTime"):
        rekor_v1_set_payload(RekorV1Entry(**fields))


@pytest.mark.vectors
@pytest.mark.parametrize("timestamp", [2**64 - 1, 10**30, 253_402_300_800_000])
def test_a_nitro_timestamp_beyond_the_calendar_is_refused(vectors_dir, timestamp: int) -> None:  # type: ignore[no-untyped-def]
    import cbor2  # noqa: PLC0415

    from ledger.attestation import nitro  # noqa: PLC0415

    raw = (vectors_dir / "tee" / "samples" / "nitro" / "evervault" / "beta-valid-attestation-doc-bytes").read_bytes()
    sign1 = cbor2.loads(raw)
    parts = list(sign1.value if isinstance(sign1, cbor2.CBORTag) else sign1)
    assert nitro.parse_document(raw).timestamp.year < 9999
    payload = dict(cbor2.loads(parts[2]))
    payload["timestamp"] = timestamp
    parts[2] = cbor2.dumps(payload)
    with pytest.raises(MalformedError, match="timestamp"):
        nitro.parse_document(cbor2.dumps(parts))


def test_a_pss_signature_too_big_for_its_tpm_key_fails_its_check_instead_of_raising() -> None:
    from ledger.attestation import tpm  # noqa: PLC0415

    key = rsa.RSAPublicNumbers(65537, (1 << 511) | 0xF1).public_key()  # 512 bits: too small for PSS/SHA-512
    sha512 = next(alg for alg, (name, _) in tpm.HASHES.items() if name == "sha512")

    class _Stub:
        pass

    ak, quote, sig, attest = _Stub(), _Stub(), _Stub(), _Stub()
    ak.key = key  # type: ignore[attr-defined]
    sig.hash_alg, sig.sig_alg, sig.signature = sha512, tpm.TPM_ALG_RSAPSS, b"\0" * 64  # type: ignore[attr-defined]
    attest.raw = b"attest"  # type: ignore[attr-defined]
    quote.signature, quote.attest = sig, attest  # type: ignore[attr-defined]
    why = tpm._verify_quote(ak, quote)  # type: ignore[arg-type]
    assert why is not None and "cannot make this signature" in why


def test_every_refusal_here_is_a_ledger_error() -> None:
    assert issubclass(MalformedError, LedgerError)


def test_a_firmware_pcr_index_that_is_not_a_number_matches_nothing() -> None:
    from ledger.trust.deployment import measurement_matches  # noqa: PLC0415

    claims = {"sha256.pcr0": "00" * 32}
    assert measurement_matches("tpm", {"bank": "sha256", "pcrs": {"0": "00" * 32}}, claims)
    assert not measurement_matches("tpm", {"bank": "sha256", "pcrs": {"x": "00" * 32}}, claims)
