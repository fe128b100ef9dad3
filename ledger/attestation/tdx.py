"""Intel TDX DCAP quotes (v4 and v5, ECDSA P-256 attestation key): parsing and appraisal.

Layout: ../shared/docs/tee-evidence-formats.md §2 (Intel DCAP quote library, go-tdx-guest
``abi``). The quote carries its PCK certificate chain (certification data type 6 wrapping
type 5); its root must be the pinned Intel SGX Root CA. Endorsements may add CRLs (PCK CRL,
root CA CRL; PEM or DER), which are then checked.

Appraisal steps (the check names):

1. ``quote_signature``: ECDSA P-256/SHA-256 (r‖s big-endian) over header ‖ body by the
   attestation key carried in the quote.
2. ``qe_report_binding``: QE_REPORT.REPORT_DATA = SHA-256(attestation key ‖ QE auth data) ‖ 0*32.
3. ``qe_report_signature``: the 384-byte QE report is signed by the PCK leaf key.
4. ``pck_chain``: PCK → Platform/Processor CA → Intel SGX Root CA (pinned), valid at ``now``.
5. ``qe_identity``: the QE report is from Intel's TD quoting enclave (MRSIGNER, ISVPRODID).
6. ``crl_not_revoked`` (only when CRLs are supplied).
7. TCB status (only with collateral, :mod:`.tdx_tcb`): ``tcb_info``, ``qe_identity_collateral``,
   ``tcb_level``, then ``tcb_status``: the status must be one the policy allows. Without
   collateral the status is "not evaluated" (and ``tcb_status`` fails when the policy requires it).
8. Policy: ``debug_disabled``, ``min_tcb``, ``measurement_matches`` (MRTD), ``registers_match``,
   ``report_data_binding``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import ledger.attestation._x509 as _x509
import ledger.attestation.tdx_tcb as tdx_tcb
from ledger.attestation._binary import Reader
from ledger.attestation.appraisal import (
    Appraisal,
    Policy,
    check_debug,
    check_measurement,
    check_registers,
    check_report_data,
    require_aware,
)
from ledger.errors import MalformedError

__all__ = [
    "INTEL_ROOT_FINGERPRINTS",
    "TD_QE_ISVPRODID",
    "TD_QE_MRSIGNER",
    "TdxQuote",
    "appraise_tdx",
    "parse_quote",
]

HEADER_SIZE = 48
QE_REPORT_SIZE = 384
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x81
CERT_DATA_QE_REPORT = 6
CERT_DATA_PCK_CHAIN = 5
TD_ATTRIBUTES_DEBUG = 1 << 0
#: v5 body types and sizes: TD 1.0 (as in v4) and TD 1.5 (adds TEE_TCB_SVN2, MRSERVICETD)
BODY_SIZES = {2: 584, 3: 648}
TD15_BODY = 3
#: a quote is a few KiB; this bounds what we parse
MAX_QUOTE_BYTES = 64 * 1024

#: SHA-256 of the DER of the Intel SGX Root CA. Computed once from
#: ../shared/vectors/tee/roots/intel/Intel_SGX_Root_CA.pem (go-tdx-guest verify/trusted_root.pem,
#: identical to the root at the end of every real quote's PCK chain).
INTEL_ROOT_FINGERPRINTS: Mapping[str, str] = {
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3": "Intel SGX Root CA",
}
#: Intel's TD quoting enclave, from Intel's published TD_QE identity (PCS qe/identity).
TD_QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
TD_QE_ISVPRODID = 2

_BODY_FIELDS = (  # (name, offset in the TD report body, size)
    ("tee_tcb_svn", 0x000, 16),
    ("mrseam", 0x010, 48),
    ("mrsignerseam", 0x040, 48),
    ("seam_attributes", 0x070, 8),
    ("td_attributes", 0x078, 8),
    ("xfam", 0x080, 8),
    ("mrtd", 0x088, 48),
    ("mrconfigid", 0x0B8, 48),
    ("mrowner", 0x0E8, 48),
    ("mrownerconfig", 0x118, 48),
    ("rtmr0", 0x148, 48),
    ("rtmr1", 0x178, 48),
    ("rtmr2", 0x1A8, 48),
    ("rtmr3", 0x1D8, 48),
    ("report_data", 0x208, 64),
)


@dataclass(frozen=True)
class TdxQuote:
    version: int
    tee_type: int
    qe_vendor_id: bytes
    body_type: int
    body: dict[str, bytes]
    signed_bytes: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @property
    def td_attributes(self) -> int:
        return int.from_bytes(self.body["td_attributes"], "little")

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes & TD_ATTRIBUTES_DEBUG)


def parse_quote(data: bytes) -> TdxQuote:
    """Parse a TDX quote v4 or v5.

    Bytes after the signature data are ignored (real quotes come zero-padded to a buffer size).

    Raises:
        MalformedError: truncated, wrong version/key type/TEE type, unexpected certification data.
    """
    data = bytes(data)
    if len(data) > MAX_QUOTE_BYTES:
        msg = f"TDX quote is larger than {MAX_QUOTE_BYTES} bytes"
        raise MalformedError(msg)
    r = Reader(data, "TDX quote")
    version = r.u16("version")
    if version not in (4, 5):
        msg = f"unsupported TDX quote version {version} (supported: 4, 5)"
        raise MalformedError(msg)
    key_type = r.u16("attestation key type")
    if key_type != ATT_KEY_TYPE_ECDSA_P256:
        msg = f"unsupported attestation key type {key_type} (2 = ECDSA P-256)"
        raise MalformedError(msg)
    tee_type = r.u32("TEE type")
    if tee_type != TEE_TYPE_TDX:
        msg = f"TEE type {tee_type:#x} is not TDX (0x81)"
        raise MalformedError(msg)
    r.bytes(4, "reserved")
    qe_vendor_id = r.bytes(16, "QE vendor id")
    r.bytes(20, "user data")
    body_type = 2
    if version == 5:
        body_type = r.u16("body type")
        body_size = r.u32("body size")
        if BODY_SIZES.get(body_type) != body_size:
            msg = f"TDX v5 body type {body_type} with size {body_size} is not supported"
            raise MalformedError(msg)
    raw_body = r.bytes(BODY_SIZES[body_type], "TD report body")
    signed_bytes = data[: r.offset]
    body = {name: raw_body[off : off + size] for name, off, size in _BODY_FIELDS}
    if body_type == TD15_BODY:
        body["tee_tcb_svn2"] = raw_body[584:600]
        body["mrservicetd"] = raw_body[600:648]

    sig_data = Reader(r.sized(4, "signature data"), "TDX quote signature data")
    signature = sig_data.bytes(64, "quote signature")
    attestation_key = sig_data.bytes(64, "attestation key")
    cert_type = sig_data.u16("certification data type")
    if cert_type != CERT_DATA_QE_REPORT:
        msg = f"TDX certification data type {cert_type} is not 6 (QE report certification data)"
        raise MalformedError(msg)
    qe = Reader(sig_data.sized(4, "certification data"), "QE report certification data")
    sig_data.end()
    qe_report = qe.bytes(QE_REPORT_SIZE, "QE report")
    qe_report_signature = qe.bytes(64, "QE report signature")
    qe_auth_data = qe.sized(2, "QE auth data")
    inner_type = qe.u16("nested certification data type")
    if inner_type != CERT_DATA_PCK_CHAIN:
        msg = f"nested certification data type {inner_type} is not 5 (PCK certificate chain)"
        raise MalformedError(msg)
    pck_chain_pem = qe.sized(4, "PCK certificate chain")
    qe.end()
    return TdxQuote(
        version=version,
        tee_type=tee_type,
        qe_vendor_id=qe_vendor_id,
        body_type=body_type,
        body=body,
        signed_bytes=signed_bytes,
        signature=signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        pck_chain_pem=pck_chain_pem,
    )


def _verify_p256(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _check_min_svn(appraisal: Appraisal, policy: Policy, svn: bytes) -> None:
    minimum = policy.min_tdx_tee_tcb_svn
    if minimum is None:
        return
    low = [f"component {i}: {got} < {want}" for i, (got, want) in enumerate(zip(svn, minimum, strict=False)) if got < want]
    ok = not low and len(minimum) <= len(svn)
    reason = f"TEE_TCB_SVN {svn.hex()} meets {minimum.hex()}" if ok else "TEE_TCB_SVN " + (
        "; ".join(low) or "minimum is longer than 16 bytes"
    )
    appraisal.add("min_tcb", ok, reason)


def _check_tcb_status(
    appraisal: Appraisal,
    policy: Policy,
    quote: TdxQuote,
    pck: bytes,
    collateral: tdx_tcb.TdxCollateral,
    pool: Sequence[bytes],
    now: datetime,
    roots: Mapping[str, str],
) -> tdx_tcb.TcbEvaluation:
    allowed = sorted(policy.tdx_allowed_tcb_statuses, key=tdx_tcb.STATUSES.index)
    if not collateral:
        if policy.tdx_require_tcb_status:
            appraisal.add(
                "tcb_status", False,
                "the policy requires a TCB status, and no TCB Info / QE Identity collateral was given",
            )
        return tdx_tcb.TcbEvaluation()
    try:
        result = tdx_tcb.evaluate_tcb(
            pck_der=pck,
            tee_tcb_svn=quote.body["tee_tcb_svn"],
            mrsignerseam=quote.body["mrsignerseam"],
            seam_attributes=quote.body["seam_attributes"],
            qe_report=quote.qe_report,
            collateral=collateral,
            extra_certificates=pool,
            now=now,
            roots=roots,
            # a TD 1.5 body: the module running now, after any TD-preserving update
            tee_tcb_svn2=quote.body.get("tee_tcb_svn2") if quote.body_type == TD15_BODY else None,
        )
    except MalformedError as exc:
        if "PCK certificate" not in str(exc):
            raise
        appraisal.add("tcb_info", False, f"the TCB cannot be judged: {exc}")
        appraisal.add("tcb_status", False, "not evaluated: the PCK certificate carries no usable TCB")
        return tdx_tcb.TcbEvaluation()
    for name, ok, reason in result.checks:
        appraisal.add(name, ok, reason)
    status = result.status
    if status is None:
        appraisal.add("tcb_status", False, "not evaluated: the collateral does not apply (see the failed checks)")
    elif status == tdx_tcb.NOT_SUPPORTED:
        appraisal.add("tcb_status", False, "the platform's TCB matches no level of the TCB Info (not supported): refused")
    else:
        advisories = f" (advisories: {', '.join(result.advisory_ids)})" if result.advisory_ids else ""
        ok = status in policy.tdx_allowed_tcb_statuses
        appraisal.add(
            "tcb_status", ok,
            f"TCB status {status}{advisories} is {'' if ok else 'not '}allowed by the policy "
            f"({', '.join(allowed) or 'none allowed'})",
        )
    return result


def appraise_tdx(
    evidence: bytes,
    *,
    endorsements: Sequence[bytes],
    now: datetime,
    policy: Policy,
    roots: Mapping[str, str] = INTEL_ROOT_FINGERPRINTS,
    collateral: tdx_tcb.TdxCollateral | None = None,
) -> Appraisal:
    """Appraise a TDX quote (v4/v5). Endorsements: optional CRLs and extra CA certificates.

    ``collateral`` (TCB Info, QE Identity, their issuer chain and CRLs) enables the TCB status;
    its signatures must chain to one of ``roots`` too.

    Raises:
        MalformedError: the quote, its embedded PEM chain, an endorsement or the collateral does
            not parse.
    """
    require_aware(now)
    quote = parse_quote(evidence)
    chain_certs = _x509.pem_certificates(quote.pck_chain_pem)
    if not chain_certs:
        msg = "the TDX quote's PCK certificate chain is empty"
        raise MalformedError(msg)
    extra_certs, crls = _x509.parse_endorsements(endorsements)
    collateral = collateral or tdx_tcb.TdxCollateral()
    crls = list(dict.fromkeys([*crls, *collateral.crls]))
    collateral = replace(collateral, crls=tuple(crls))
    appraisal = Appraisal(kind="tdx")

    # (1) Quote signature by the attestation key.
    try:
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    except ValueError:
        appraisal.add("quote_signature", False, "the attestation key is not a P-256 point")
        att_key = None
    if att_key is not None:
        ok = _verify_p256(att_key, quote.signature, quote.signed_bytes)
        appraisal.add(
            "quote_signature",
            ok,
            "ECDSA P-256 over header and TD report body "
            + ("verifies with the attestation key" if ok else "does not verify"),
        )

    # (2) The attestation key is the one the QE vouched for.
    qe_report_data = quote.qe_report[0x140:0x180]
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
    binding_ok = hmac.compare_digest(qe_report_data, expected)
    appraisal.add(
        "qe_report_binding",
        binding_ok,
        "QE REPORT_DATA "
        + ("= " if binding_ok else "!= ")
        + "SHA-256(attestation key ‖ QE auth data) ‖ zeros",
    )

    # (3) The QE report is signed by the PCK; (4) the PCK chains to the pinned root.
    pck = chain_certs[0]
    pck_key = _x509.load_der(pck).public_key()
    if isinstance(pck_key, ec.EllipticCurvePublicKey) and pck_key.curve.name == "secp256r1":
        ok = _verify_p256(pck_key, quote.qe_report_signature, quote.qe_report)
        appraisal.add(
            "qe_report_signature",
            ok,
            "the QE report signature " + ("verifies" if ok else "does not verify")
            + f" with the PCK {_x509.describe(pck)}",
        )
    else:
        appraisal.add("qe_report_signature", False, "the PCK key is not ECDSA P-256")
    chain = _x509.verify_chain(pck, chain_certs + extra_certs, roots, now)
    appraisal.add("pck_chain", chain.ok, chain.reason)

    # (5) The quoting enclave is Intel's TD QE.
    mrsigner = quote.qe_report[0x80:0xA0]
    isvprodid = int.from_bytes(quote.qe_report[0x100:0x102], "little")
    qe_ok = mrsigner == TD_QE_MRSIGNER and isvprodid == TD_QE_ISVPRODID
    appraisal.add(
        "qe_identity",
        qe_ok,
        f"QE MRSIGNER {mrsigner.hex()[:16]}…, ISVPRODID {isvprodid}: "
        + ("Intel's TD quoting enclave" if qe_ok else "not Intel's TD quoting enclave"),
    )

    # (6) Revocation, when CRLs are supplied.
    if crls:
        if chain.ok:
            appraisal.add("crl_not_revoked", *_x509.verify_crls(chain.path, crls, now))
        else:
            appraisal.add("crl_not_revoked", False, "no verified chain to check CRLs against")

    # (7) TCB status against Intel's collateral.
    body = quote.body
    tcb = _check_tcb_status(appraisal, policy, quote, pck, collateral, [*chain_certs, *extra_certs], now, roots)

    # (8) Policy.
    check_debug(appraisal, policy, debug=quote.debug, what="TD_ATTRIBUTES.DEBUG")
    _check_min_svn(appraisal, policy, body["tee_tcb_svn"])
    check_measurement(appraisal, policy, body["mrtd"])
    registers = {
        name: body[name]
        for name in ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner",
                     "mrownerconfig", "mrseam")
    }
    check_registers(appraisal, policy, registers)
    check_report_data(appraisal, policy, body["report_data"], pad_to=64, what="REPORT_DATA")

    appraisal.claims = {
        "kind": "tdx",
        "measurement": body["mrtd"].hex(),
        "report_data": body["report_data"].hex(),
        "debug": quote.debug,
        "version": quote.version,
        "tee_type": f"{quote.tee_type:#x}",
        "td_attributes": f"{quote.td_attributes:#x}",
        "mrtd": body["mrtd"].hex(),
        "tee_tcb_svn": body["tee_tcb_svn"].hex(),
        **({"tee_tcb_svn2": body["tee_tcb_svn2"].hex()} if "tee_tcb_svn2" in body else {}),
        "xfam": body["xfam"].hex(),
        "crl_checked": bool(crls),
        "tcb_status": tcb.status if tcb.status is not None else "not evaluated",
        "advisory_ids": list(tcb.advisory_ids),
        "fmspc": tcb.fmspc,
        "tcb_date": tcb.tcb_date,
        **{name: value.hex() for name, value in registers.items()},
    }
    return appraisal
