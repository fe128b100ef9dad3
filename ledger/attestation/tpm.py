"""TPM 2.0 quotes: parsing and appraisal.

Layouts: ../shared/docs/tee-evidence-formats.md §4 (TPM 2.0 Library Part 2: TPMS_ATTEST,
TPMT_SIGNATURE, TPMT_PUBLIC; all integers big-endian).

Evidence forms (one file; the first non-blank byte ``{`` selects JSON):

* go-tpm-tools ``attest.Attestation`` protobuf (what real GCE samples carry): field 1 ak_pub
  (TPMT_PUBLIC), 2 repeated Quote {1 quote (TPMS_ATTEST), 2 raw_sig (TPMT_SIGNATURE), 3 pcrs
  {1 hash (TPM_ALG_ID), 2 map<uint32, bytes>}}, 6 ak_cert (DER), 7 repeated intermediate certs.
  Other fields (the event log, TEE attestations) are ignored.
* Our JSON form, ``provledger-tpm-evidence/v1``::

    {
      "format": "provledger-tpm-evidence/v1",
      "ak_public": "<base64 TPMT_PUBLIC>",
      "ak_certificate": "<base64 DER>" | null,
      "intermediates": ["<base64 DER>", ...],
      "quotes": [
        {"attest": "<base64 TPMS_ATTEST>",
         "signature": "<base64 TPMT_SIGNATURE>",
         "pcrs": {"sha256": {"0": "<hex>", "1": "<hex>", ...}, ...}}
      ]
    }

  Bank names are ``sha1``, ``sha256``, ``sha384``, ``sha512``; unknown keys are refused.

There is no global TPM root: the AK certificate must chain to a root in ``policy.tpm_roots``
(default :data:`KNOWN_TPM_ROOTS`, Google Cloud's vTPM CAs); CA certificates not carried by the
evidence come as endorsements.

Appraisal steps (the check names): ``ak_attributes`` (a restricted signing key that never left
its TPM), ``ak_certificate_matches`` (the certificate's key is the AK), ``ak_chain``,
``quote_signature`` (every quote, RSASSA / RSAPSS / ECDSA), ``pcr_digest`` (every quote's
pcrDigest equals H(selected PCR values) with H the signature's hash), then ``measurement_matches``
(the SHA-256-bank quote's pcrDigest, else the first quote's), ``registers_match``
(``sha256.pcr7`` style names) and ``report_data_binding`` (extraData of every quote).
The TCG event log is not replayed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import ledger.attestation._protobuf as _protobuf
import ledger.attestation._x509 as _x509
from ledger.attestation._binary import Reader
from ledger.attestation.appraisal import (
    Appraisal,
    Policy,
    check_measurement,
    check_registers,
    check_report_data,
    require_aware,
)
from ledger.errors import MalformedError
from ledger.untrusted.json import parse_json

__all__ = [
    "KNOWN_TPM_ROOTS",
    "TpmEvidence",
    "appraise_tpm",
    "parse_attest",
    "parse_evidence",
    "parse_public",
    "parse_signature",
]

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_RSA, TPM_ALG_ECC, TPM_ALG_NULL = 0x0001, 0x0023, 0x0010
TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_ECDSA = 0x0014, 0x0016, 0x0018
HASHES: Mapping[int, tuple[str, type[hashes.HashAlgorithm]]] = {
    0x0004: ("sha1", hashes.SHA1),
    0x000B: ("sha256", hashes.SHA256),
    0x000C: ("sha384", hashes.SHA384),
    0x000D: ("sha512", hashes.SHA512),
}
BANKS = {name: alg for alg, (name, _) in HASHES.items()}
CURVES: Mapping[int, ec.EllipticCurve] = {
    0x0003: ec.SECP256R1(),
    0x0004: ec.SECP384R1(),
    0x0005: ec.SECP521R1(),
}
# fixedTPM | fixedParent | sensitiveDataOrigin | restricted | sign
AK_REQUIRED_ATTRIBUTES = 0x00000002 | 0x00000010 | 0x00000020 | 0x00010000 | 0x00040000
MAX_EVIDENCE_BYTES = 1024 * 1024
JSON_FORMAT = "provledger-tpm-evidence/v1"

#: SHA-256 of the DER of the TPM CAs trusted by default: Google Cloud's vTPM roots. Computed once
#: from ../shared/vectors/tee/samples/tpm/go-tpm-tools/gce-ca-certs/ (go-tpm-tools server/ca-certs).
KNOWN_TPM_ROOTS: Mapping[str, str] = {
    "9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf": "GCE tpm_ek_root_1",
    "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2": "GCE EK/AK CA Root",
}


@dataclass(frozen=True)
class TpmPublic:
    raw: bytes
    type: int
    name_alg: int
    attributes: int
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    @property
    def name(self) -> bytes:
        """The TPM Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC)."""
        if self.name_alg not in HASHES:
            return self.name_alg.to_bytes(2, "big")
        digest = hashes.Hash(HASHES[self.name_alg][1]())
        digest.update(self.raw)
        return self.name_alg.to_bytes(2, "big") + digest.finalize()


@dataclass(frozen=True)
class TpmAttest:
    raw: bytes
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    firmware_version: int
    selection: tuple[tuple[int, tuple[int, ...]], ...]  # (bank hash alg, PCR indexes ascending)
    pcr_digest: bytes


@dataclass(frozen=True)
class TpmSignature:
    sig_alg: int
    hash_alg: int
    signature: bytes  # RSA signature, or a DER ECDSA signature


@dataclass(frozen=True)
class TpmQuote:
    attest: TpmAttest
    signature: TpmSignature
    pcrs: dict[int, dict[int, bytes]]  # bank hash alg -> index -> value


@dataclass(frozen=True)
class TpmEvidence:
    ak_public: TpmPublic
    quotes: tuple[TpmQuote, ...]
    ak_certificate: bytes | None
    intermediates: tuple[bytes, ...]


def _sym_and_scheme(r: Reader) -> None:
    if r.u16("symmetric algorithm") != TPM_ALG_NULL:
        r.u16("symmetric key bits")
        r.u16("symmetric mode")
    if r.u16("scheme") != TPM_ALG_NULL:
        r.u16("scheme hash")


def parse_public(data: bytes) -> TpmPublic:
    """Parse a TPMT_PUBLIC (RSA or ECC) into its attributes and public key."""
    r = Reader(data, "TPMT_PUBLIC", big_endian=True)
    key_type = r.u16("type")
    name_alg = r.u16("nameAlg")
    attributes = r.u32("objectAttributes")
    r.sized(2, "authPolicy")
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    try:
        if key_type == TPM_ALG_RSA:
            _sym_and_scheme(r)
            key_bits = r.u16("keyBits")
            exponent = r.u32("exponent") or 65537
            modulus = r.sized(2, "modulus")
            if len(modulus) * 8 != key_bits:
                msg = f"TPMT_PUBLIC modulus is {len(modulus) * 8} bits, keyBits says {key_bits}"
                raise MalformedError(msg)
            key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
        elif key_type == TPM_ALG_ECC:
            _sym_and_scheme(r)
            curve_id = r.u16("curveID")
            if r.u16("kdf") != TPM_ALG_NULL:
                r.u16("kdf hash")
            x = r.sized(2, "x")
            y = r.sized(2, "y")
            if curve_id not in CURVES:
                msg = f"unsupported TPM curve {curve_id:#06x}"
                raise MalformedError(msg)
            curve = CURVES[curve_id]
            size = (curve.key_size + 7) // 8
            point = b"\x04" + x.rjust(size, b"\x00") + y.rjust(size, b"\x00")
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        else:
            msg = f"unsupported TPMT_PUBLIC type {key_type:#06x} (RSA or ECC only)"
            raise MalformedError(msg)
    except ValueError as exc:
        msg = f"TPMT_PUBLIC key is invalid: {exc}"
        raise MalformedError(msg) from exc
    r.end()
    return TpmPublic(bytes(data), key_type, name_alg, attributes, key)


def parse_attest(data: bytes) -> TpmAttest:
    """Parse a TPMS_ATTEST that must be a quote (magic and type are checked)."""
    r = Reader(data, "TPMS_ATTEST", big_endian=True)
    if r.u32("magic") != TPM_GENERATED_VALUE:
        msg = "TPMS_ATTEST magic is not TPM_GENERATED_VALUE (0xff544347)"
        raise MalformedError(msg)
    st = r.u16("type")
    if st != TPM_ST_ATTEST_QUOTE:
        msg = f"TPMS_ATTEST type {st:#06x} is not a quote (0x8018)"
        raise MalformedError(msg)
    qualified_signer = r.sized(2, "qualifiedSigner")
    extra_data = r.sized(2, "extraData")
    clock = r.u64("clock")
    r.u32("resetCount")
    r.u32("restartCount")
    r.u8("safe")
    firmware = r.u64("firmwareVersion")
    count = r.u32("pcrSelect count")
    if count > len(HASHES) * 2:
        msg = f"TPML_PCR_SELECTION has {count} entries"
        raise MalformedError(msg)
    selection = []
    for _ in range(count):
        alg = r.u16("pcrSelect hash")
        bitmap = r.sized(1, "pcrSelect bitmap")
        indexes = tuple(8 * j + i for j, byte in enumerate(bitmap) for i in range(8) if byte >> i & 1)
        selection.append((alg, indexes))
    pcr_digest = r.sized(2, "pcrDigest")
    r.end()
    return TpmAttest(
        bytes(data), qualified_signer, extra_data, clock, firmware, tuple(selection), pcr_digest
    )


def parse_signature(data: bytes) -> TpmSignature:
    """Parse a TPMT_SIGNATURE (RSASSA, RSAPSS or ECDSA)."""
    r = Reader(data, "TPMT_SIGNATURE", big_endian=True)
    sig_alg = r.u16("sigAlg")
    hash_alg = r.u16("hash")
    if hash_alg not in HASHES:
        msg = f"unsupported TPM signature hash {hash_alg:#06x}"
        raise MalformedError(msg)
    if sig_alg in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS):
        signature = r.sized(2, "signature")
    elif sig_alg == TPM_ALG_ECDSA:
        sig_r = int.from_bytes(r.sized(2, "signatureR"), "big")
        sig_s = int.from_bytes(r.sized(2, "signatureS"), "big")
        signature = encode_dss_signature(sig_r, sig_s)
    else:
        msg = f"unsupported TPM signature algorithm {sig_alg:#06x}"
        raise MalformedError(msg)
    r.end()
    return TpmSignature(sig_alg, hash_alg, signature)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        msg = f"TPM evidence JSON: {what} must be a base64 string"
        raise MalformedError(msg)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"TPM evidence JSON: {what} is not valid base64"
        raise MalformedError(msg) from exc


def _only_keys(obj: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        msg = f"TPM evidence JSON: {what} must be an object"
        raise MalformedError(msg)
    unknown = set(obj) - allowed
    if unknown:
        msg = f"TPM evidence JSON: unknown key(s) {sorted(unknown)} in {what}"
        raise MalformedError(msg)
    return obj


def _parse_json(data: bytes) -> TpmEvidence:
    doc = parse_json(data, what="TPM evidence")
    doc = _only_keys(doc, {"format", "ak_public", "ak_certificate", "intermediates", "quotes"}, "the evidence")
    if doc.get("format") != JSON_FORMAT:
        msg = f"TPM evidence JSON: format must be {JSON_FORMAT!r}"
        raise MalformedError(msg)
    quotes = doc.get("quotes")
    if not isinstance(quotes, list):
        msg = "TPM evidence JSON: quotes must be a list"
        raise MalformedError(msg)
    parsed = []
    for i, q in enumerate(quotes):
        q = _only_keys(q, {"attest", "signature", "pcrs"}, f"quote {i}")
        banks = _only_keys(q.get("pcrs", {}), set(BANKS), f"quote {i} pcrs")
        pcrs: dict[int, dict[int, bytes]] = {}
        for bank, values in banks.items():
            if not isinstance(values, dict):
                msg = f"TPM evidence JSON: quote {i} pcrs.{bank} must be an object"
                raise MalformedError(msg)
            try:
                pcrs[BANKS[bank]] = {int(k): bytes.fromhex(v) for k, v in values.items()}
            except (ValueError, TypeError) as exc:
                msg = f"TPM evidence JSON: quote {i} pcrs.{bank} needs decimal indexes and hex"
                raise MalformedError(msg) from exc
        parsed.append(
            TpmQuote(
                parse_attest(_b64(q.get("attest"), f"quote {i} attest")),
                parse_signature(_b64(q.get("signature"), f"quote {i} signature")),
                pcrs,
            )
        )
    cert = doc.get("ak_certificate")
    intermediates = doc.get("intermediates", [])
    if not isinstance(intermediates, list):
        msg = "TPM evidence JSON: intermediates must be a list"
        raise MalformedError(msg)
    return TpmEvidence(
        parse_public(_b64(doc.get("ak_public"), "ak_public")),
        tuple(parsed),
        None if cert is None else _b64(cert, "ak_certificate"),
        tuple(_b64(c, "intermediate") for c in intermediates),
    )


def _bytes_field(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        msg = f"go-tpm-tools attestation: {what} is not length-delimited"
        raise MalformedError(msg)
    return value


def _parse_protobuf(data: bytes) -> TpmEvidence:
    what = "go-tpm-tools attestation"
    ak_pub = None
    quotes = []
    ak_cert = None
    intermediates = []
    for number, _, value in _protobuf.fields(data, what):
        if number == 1:
            ak_pub = _bytes_field(value, "ak_pub")
        elif number == 2:
            quote_bytes = sig_bytes = None
            pcrs: dict[int, dict[int, bytes]] = {}
            for qn, _, qv in _protobuf.fields(_bytes_field(value, "quote"), f"{what} quote"):
                if qn == 1:
                    quote_bytes = _bytes_field(qv, "quote.quote")
                elif qn == 2:
                    sig_bytes = _bytes_field(qv, "quote.raw_sig")
                elif qn == 3:
                    bank = 0
                    values: dict[int, bytes] = {}
                    for pn, _, pv in _protobuf.fields(_bytes_field(qv, "quote.pcrs"), f"{what} pcrs"):
                        if pn == 1 and isinstance(pv, int):
                            bank = pv
                        elif pn == 2:
                            entry = dict((n, v) for n, _, v in _protobuf.fields(_bytes_field(pv, "pcr entry"), f"{what} pcr entry"))
                            index, digest = entry.get(1, 0), entry.get(2, b"")
                            if not isinstance(index, int) or not isinstance(digest, bytes):
                                msg = f"{what}: a PCR map entry has the wrong types"
                                raise MalformedError(msg)
                            values[index] = digest
                    pcrs[bank] = values
            if quote_bytes is None or sig_bytes is None:
                msg = f"{what}: a quote lacks its TPMS_ATTEST or signature"
                raise MalformedError(msg)
            quotes.append(TpmQuote(parse_attest(quote_bytes), parse_signature(sig_bytes), pcrs))
        elif number == 6:
            ak_cert = _bytes_field(value, "ak_cert") or None
        elif number == 7:
            intermediates.append(_bytes_field(value, "intermediate_certs"))
    if ak_pub is None:
        msg = f"{what} has no ak_pub"
        raise MalformedError(msg)
    return TpmEvidence(parse_public(ak_pub), tuple(quotes), ak_cert, tuple(intermediates))


def parse_evidence(data: bytes) -> TpmEvidence:
    """Parse TPM evidence in our JSON form or as a go-tpm-tools protobuf.

    Raises:
        MalformedError: it parses as neither, a structure inside is malformed, or it has no quote.
    """
    data = bytes(data)
    if len(data) > MAX_EVIDENCE_BYTES:
        msg = f"TPM evidence is larger than {MAX_EVIDENCE_BYTES} bytes"
        raise MalformedError(msg)
    evidence = _parse_json(data) if data.lstrip()[:1] == b"{" else _parse_protobuf(data)
    if not evidence.quotes:
        msg = "TPM evidence has no quote"
        raise MalformedError(msg)
    if evidence.ak_certificate is not None:
        _x509.load_der(evidence.ak_certificate)
    for der in evidence.intermediates:
        _x509.load_der(der)
    return evidence


def _verify_quote(ak: TpmPublic, quote: TpmQuote) -> str | None:
    sig = quote.signature
    algorithm = HASHES[sig.hash_alg][1]()
    try:
        if isinstance(ak.key, rsa.RSAPublicKey):
            if sig.sig_alg == TPM_ALG_RSASSA:
                ak.key.verify(sig.signature, quote.attest.raw, padding.PKCS1v15(), algorithm)
            elif sig.sig_alg == TPM_ALG_RSAPSS:
                pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
                ak.key.verify(sig.signature, quote.attest.raw, pss, algorithm)
            else:
                return "an RSA AK cannot make an ECDSA signature"
        elif sig.sig_alg == TPM_ALG_ECDSA:
            ak.key.verify(sig.signature, quote.attest.raw, ec.ECDSA(algorithm))
        else:
            return "an ECC AK cannot make an RSA signature"
    except InvalidSignature:
        return "signature does not verify with the AK"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # e.g. a PSS digest too large for the key
        return f"the AK cannot make this signature: {exc}"
    return None


def _pcr_digest(quote: TpmQuote) -> tuple[bytes | None, str]:
    digest = hashes.Hash(HASHES[quote.signature.hash_alg][1]())
    for bank, indexes in quote.attest.selection:
        values = quote.pcrs.get(bank, {})
        for index in indexes:
            if index not in values:
                name = HASHES.get(bank, (f"{bank:#06x}", None))[0]
                return None, f"PCR {name}:{index} is selected but its value is not supplied"
            digest.update(values[index])
    return digest.finalize(), ""


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def appraise_tpm(
    evidence: bytes,
    *,
    endorsements: Sequence[bytes],
    now: datetime,
    policy: Policy,
) -> Appraisal:
    """Appraise TPM 2.0 quotes; endorsements add CA certificates for the AK chain.

    Raises:
        MalformedError: the evidence or an endorsement does not parse.
    """
    require_aware(now)
    ev = parse_evidence(evidence)
    extra_certs, _ = _x509.parse_endorsements(endorsements)
    appraisal = Appraisal(kind="tpm")
    ak = ev.ak_public

    missing = AK_REQUIRED_ATTRIBUTES & ~ak.attributes
    appraisal.add(
        "ak_attributes",
        not missing,
        f"objectAttributes {ak.attributes:#010x} "
        + ("mark a restricted signing key bound to its TPM" if not missing
           else f"lack required bits {missing:#010x}"),
    )

    roots = dict(KNOWN_TPM_ROOTS) if policy.tpm_roots is None else {
        fp: "configured TPM root" for fp in policy.tpm_roots
    }
    if ev.ak_certificate is None:
        appraisal.add("ak_certificate_matches", False, "the evidence has no AK certificate")
        appraisal.add("ak_chain", False, "no AK certificate to chain")
    else:
        cert_key = _x509.load_der(ev.ak_certificate).public_key()
        same = hmac.compare_digest(_spki(cert_key), _spki(ak.key))
        appraisal.add(
            "ak_certificate_matches",
            same,
            "the AK certificate's key " + ("is" if same else "is not") + " the quoted AK",
        )
        chain = _x509.verify_chain(
            ev.ak_certificate, [*ev.intermediates, *extra_certs], roots, now
        )
        appraisal.add("ak_chain", chain.ok, chain.reason)

    sig_problems = []
    digest_problems = []
    for i, quote in enumerate(ev.quotes):
        if (why := _verify_quote(ak, quote)) is not None:
            sig_problems.append(f"quote {i}: {why}")
        computed, why = _pcr_digest(quote)
        if computed is None:
            digest_problems.append(f"quote {i}: {why}")
        elif not hmac.compare_digest(computed, quote.attest.pcr_digest):
            digest_problems.append(f"quote {i}: pcrDigest differs from the supplied PCR values")
    n = len(ev.quotes)
    appraisal.add(
        "quote_signature",
        not sig_problems,
        "; ".join(sig_problems) or f"{n} quote signature(s) verify with the AK",
    )
    appraisal.add(
        "pcr_digest",
        not digest_problems,
        "; ".join(digest_problems) or f"{n} pcrDigest(s) equal the hash of the supplied PCRs",
    )

    # Only PCR values covered by a quote's selection are claims.
    registers: dict[str, bytes] = {}
    for quote in ev.quotes:
        for bank, indexes in quote.attest.selection:
            name = HASHES.get(bank, (f"{bank:#06x}", None))[0]
            for index in indexes:
                if index in quote.pcrs.get(bank, {}):
                    registers[f"{name}.pcr{index}"] = quote.pcrs[bank][index]
    primary = next(
        (q for q in ev.quotes if any(b == 0x000B for b, _ in q.attest.selection)), ev.quotes[0]
    )
    measurement = primary.attest.pcr_digest
    check_measurement(appraisal, policy, measurement)
    check_registers(appraisal, policy, registers)
    if policy.expected_report_data is not None:
        nonces = {q.attest.extra_data for q in ev.quotes}
        report_data = nonces.pop() if len(nonces) == 1 else None
        if report_data is None:
            appraisal.add("report_data_binding", False, "the quotes carry different extraData")
        else:
            check_report_data(appraisal, policy, report_data, pad_to=None, what="extraData")

    appraisal.claims = {
        "kind": "tpm",
        "measurement": measurement.hex(),
        "report_data": primary.attest.extra_data.hex(),
        "debug": False,
        "ak_name": ak.name.hex(),
        "ak_type": "rsa" if ak.type == TPM_ALG_RSA else "ecc",
        "quotes": [
            {
                "banks": [HASHES.get(b, (f"{b:#06x}", None))[0] for b, _ in q.attest.selection],
                "pcr_digest": q.attest.pcr_digest.hex(),
                "extra_data": q.attest.extra_data.hex(),
                "firmware_version": f"{q.attest.firmware_version:#x}",
            }
            for q in ev.quotes
        ],
        **{name: value.hex() for name, value in registers.items()},
    }
    return appraisal

