"""AMD SEV-SNP attestation reports: parsing and appraisal.

Layout: ../shared/docs/tee-evidence-formats.md §1 (the SNP ABI spec #56860, ATTESTATION_REPORT).
The evidence is the raw 1184-byte report (versions 2, 3 and 5; 4 is read like 3). The
endorsements are the VCEK or VLEK certificate (DER or PEM) and the ASK/ASVK + ARK chain (PEM, as
AMD KDS serves ``cert_chain``). The ARK must be one of the pinned roots below.

Appraisal steps (the check names):

1. ``vcek_chain``: VCEK → ASK → ARK (or VLEK → ASVK → ARK), RSA-PSS, valid at ``now``, ARK pinned.
2. ``report_signature``: ECDSA P-384 / SHA-384 over bytes 0x000-0x29F, R and S little-endian.
3. ``vcek_tcb_matches_report``: the VCEK's SPL extensions equal REPORTED_TCB.
4. ``vcek_hwid_matches_report``: the VCEK's hwID equals CHIP_ID (VLEKs are not chip-bound).
5. Policy: ``debug_disabled``, ``migration_agent_disabled``, ``vmpl_allowed``, ``min_tcb``,
   ``measurement_matches``, ``registers_match``, ``report_data_binding``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import ObjectIdentifier, UnrecognizedExtension
from cryptography.x509.oid import NameOID

import ledger.attestation._x509 as _x509
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
    "AMD_ARK_FINGERPRINTS",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SnpReport",
    "appraise_sev_snp",
    "decode_tcb",
    "parse_report",
]

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
MIN_VERSION, MAX_VERSION = 2, 5
SIG_ALGO_ECDSA_P384_SHA384 = 1

POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19

SIGNING_KEY_VCEK, SIGNING_KEY_VLEK, SIGNING_KEY_NONE = 0, 1, 7

#: SHA-256 of the DER of AMD's root keys (ARK), one per product. Computed once from
#: ../shared/vectors/tee/roots/amd/ark_{milan,genoa,turin}.pem (copied from go-sev-guest and
#: byte-identical to virtee/sev's built-in ARKs); the certificates themselves are not committed.
AMD_ARK_FINGERPRINTS: Mapping[str, str] = {
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd": "Milan",
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1": "Genoa",
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a": "Turin",
}

_AMD_ARC = "1.3.6.1.4.1.3704.1"
OID_PRODUCT_NAME = ObjectIdentifier(f"{_AMD_ARC}.2")
OID_HWID = ObjectIdentifier(f"{_AMD_ARC}.4")
SPL_OIDS = {
    "bl": ObjectIdentifier(f"{_AMD_ARC}.3.1"),
    "tee": ObjectIdentifier(f"{_AMD_ARC}.3.2"),
    "snp": ObjectIdentifier(f"{_AMD_ARC}.3.3"),
    "ucode": ObjectIdentifier(f"{_AMD_ARC}.3.8"),
    "fmc": ObjectIdentifier(f"{_AMD_ARC}.3.9"),
}
# Byte positions of each SPL in an 8-byte TCB_VERSION; Turin moved them and added FMC.
_TCB_LAYOUT = {
    "Milan": {"bl": 0, "tee": 1, "snp": 6, "ucode": 7},
    "Genoa": {"bl": 0, "tee": 1, "snp": 6, "ucode": 7},
    "Turin": {"fmc": 0, "bl": 1, "tee": 2, "snp": 3, "ucode": 7},
}


@dataclass(frozen=True)
class SnpReport:
    """The fields of an ATTESTATION_REPORT that appraisal uses (byte strings are raw)."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: bytes
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    reported_tcb: bytes
    cpuid: tuple[int, int, int] | None
    chip_id: bytes
    committed_tcb: bytes
    launch_tcb: bytes
    signature_r: int
    signature_s: int

    @property
    def signing_key(self) -> int:
        return (self.signer_info >> 2) & 0b111

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def migration_agent(self) -> bool:
        return bool(self.policy & POLICY_MIGRATE_MA)

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_SIZE]


def parse_report(data: bytes) -> SnpReport:
    """Parse a raw ATTESTATION_REPORT.

    Raises:
        MalformedError: wrong size, unsupported version or signature algorithm, unknown signing
            key, or non-zero must-be-zero bytes.
    """
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        msg = f"SEV-SNP report must be {REPORT_SIZE} bytes, got {len(data)}"
        raise MalformedError(msg)
    version, guest_svn, policy = struct.unpack_from("<IIQ", data, 0)
    if not MIN_VERSION <= version <= MAX_VERSION:
        msg = f"unsupported SEV-SNP report version {version} (supported: 2 to 5)"
        raise MalformedError(msg)
    vmpl, sig_algo = struct.unpack_from("<II", data, 0x30)
    if sig_algo != SIG_ALGO_ECDSA_P384_SHA384:
        msg = f"unsupported SEV-SNP signature algorithm {sig_algo} (1 = ECDSA P-384/SHA-384)"
        raise MalformedError(msg)
    (platform_info,) = struct.unpack_from("<Q", data, 0x40)
    signer_info, reserved = struct.unpack_from("<II", data, 0x48)
    signing_key = (signer_info >> 2) & 0b111
    if signing_key not in (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK, SIGNING_KEY_NONE):
        msg = f"SEV-SNP report names an unknown signing key {signing_key}"
        raise MalformedError(msg)
    if reserved:
        msg = "SEV-SNP report has non-zero reserved bytes at 0x4C"
        raise MalformedError(msg)
    signature = data[SIGNED_SIZE:]
    if any(signature[144:]):
        msg = "SEV-SNP report signature has non-zero bytes after R and S"
        raise MalformedError(msg)
    return SnpReport(
        raw=data,
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=vmpl,
        signature_algo=sig_algo,
        current_tcb=data[0x38:0x40],
        platform_info=platform_info,
        signer_info=signer_info,
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        reported_tcb=data[0x180:0x188],
        cpuid=tuple(data[0x188:0x18B]) if version >= 3 else None,  # type: ignore[arg-type]
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=data[0x1E0:0x1E8],
        launch_tcb=data[0x1F0:0x1F8],
        signature_r=int.from_bytes(signature[0:72], "little"),
        signature_s=int.from_bytes(signature[72:144], "little"),
    )


def decode_tcb(raw: bytes, product: str) -> dict[str, int]:
    """The SPL components of an 8-byte TCB_VERSION in ``product``'s layout."""
    layout = _TCB_LAYOUT.get(product, _TCB_LAYOUT["Milan"])
    return {name: raw[index] for name, index in layout.items()}


def _product_from_cpuid(cpuid: tuple[int, int, int] | None) -> str | None:
    if cpuid is None:
        return None
    family, model, _ = cpuid
    if family == 0x19:
        return "Milan" if model < 0x10 else "Genoa"
    if family == 0x1A:
        return "Turin"
    return None


def _der_integer(value: bytes) -> int:
    """A small DER INTEGER (the AMD SPL extension values, e.g. ``02 01 08``)."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[1] > 8:
        msg = f"not a small DER INTEGER: {value.hex()}"
        raise MalformedError(msg)
    return int.from_bytes(value[2:], "big", signed=True)


def _hwid(value: bytes) -> bytes:
    # KDS issues the raw bytes; some producers wrap them in a DER OCTET STRING.
    if len(value) in (66, 10) and value[0] == 0x04 and value[1] == len(value) - 2:
        return value[2:]
    return value


def _extension(cert: Any, oid: ObjectIdentifier) -> bytes | None:
    with _x509.quiet():
        for ext in cert.extensions:
            if ext.oid == oid and isinstance(ext.value, UnrecognizedExtension):
                return bytes(ext.value.value)
    return None


def _pick_signing_cert(report: SnpReport, certs: Sequence[bytes]) -> bytes | None:
    want = "SEV-VLEK" if report.signing_key == SIGNING_KEY_VLEK else "SEV-VCEK"
    fallback = None
    for der in certs:
        cert = _x509.load_der(der)
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            continue
        with _x509.quiet():
            cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cns and cns[0].value == want:
            return der
        fallback = fallback or der
    return fallback


def _common_name(der: bytes) -> str:
    with _x509.quiet():
        cns = _x509.load_der(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _check_key_kind(path: Sequence[bytes], signing_key: int, reason: str) -> tuple[bool, str]:
    """A VCEK must sit under an ASK and a VLEK under an ASVK ("SEV-VLEK-<product>")."""
    vlek = signing_key == SIGNING_KEY_VLEK
    leaf_cn = _common_name(path[0])
    issuer_cn = _common_name(path[1]) if len(path) > 2 else ""  # noqa: PLR2004 - leaf, ASK, ARK
    if leaf_cn != ("SEV-VLEK" if vlek else "SEV-VCEK"):
        return False, f"the report names a {'VLEK' if vlek else 'VCEK'} but the certificate is {leaf_cn!r}"
    if issuer_cn.startswith("SEV-VLEK-") != vlek:
        return False, f"a {'VLEK' if vlek else 'VCEK'} must not be issued by {issuer_cn!r}"
    return True, reason


def _verify_signature(report: SnpReport, leaf: bytes) -> tuple[bool, str]:
    key = _x509.load_der(leaf).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return False, "the signing certificate's key is not ECDSA P-384"
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False, "the report signature does not verify with the signing key"
    return True, "ECDSA P-384/SHA-384 over bytes 0x000-0x29F verifies"


def _check_vcek_extensions(
    appraisal: Appraisal, report: SnpReport, leaf: bytes | None, product: str
) -> None:
    if leaf is None:
        appraisal.add("vcek_tcb_matches_report", False, "no signing certificate to compare with")
        if report.signing_key == SIGNING_KEY_VCEK:
            appraisal.add("vcek_hwid_matches_report", False, "no VCEK to compare with")
        return
    cert = _x509.load_der(leaf)
    reported = decode_tcb(report.reported_tcb, product)
    mismatches = []
    for name, value in reported.items():
        raw = _extension(cert, SPL_OIDS[name])
        if raw is None:
            mismatches.append(f"{name}SPL extension missing")
            continue
        try:
            cert_value = _der_integer(raw)
        except MalformedError as exc:
            mismatches.append(f"{name}SPL extension unreadable ({exc})")
            continue
        if cert_value != value:
            mismatches.append(f"{name}SPL is {cert_value} in the certificate, {value} in the report")
    if mismatches:
        appraisal.add("vcek_tcb_matches_report", False, "; ".join(mismatches))
    else:
        spl = ", ".join(f"{k}={v}" for k, v in reported.items())
        appraisal.add("vcek_tcb_matches_report", True, f"certificate SPLs equal REPORTED_TCB ({spl})")

    if report.signing_key == SIGNING_KEY_VLEK:
        appraisal.add("vcek_hwid_matches_report", True, "VLEK: not bound to a chip id")
        return
    raw_hwid = _extension(cert, OID_HWID)
    if raw_hwid is None:
        appraisal.add("vcek_hwid_matches_report", False, "the VCEK has no hwID extension")
        return
    hwid = _hwid(raw_hwid)
    # Turin VCEKs carry an 8-byte hwID: the first 8 bytes of CHIP_ID.
    expected = report.chip_id[: len(hwid)] if len(hwid) == 8 else report.chip_id
    if hwid == expected and any(hwid):
        appraisal.add("vcek_hwid_matches_report", True, "VCEK hwID equals CHIP_ID")
    else:
        appraisal.add(
            "vcek_hwid_matches_report",
            False,
            f"VCEK hwID {hwid.hex()} differs from CHIP_ID {report.chip_id.hex()}",
        )


def _check_min_tcb(
    appraisal: Appraisal, policy: Policy, report: SnpReport, tcb: dict[str, int]
) -> None:
    if policy.min_snp_tcb is None and policy.min_guest_svn is None:
        return
    low = []
    for name, minimum in sorted((policy.min_snp_tcb or {}).items()):
        if name == "fmc" and name not in tcb:
            continue  # FMC exists on Turin only: a minimum for it applies where it is present
        if name not in tcb:
            low.append(f"{name}SPL is not part of this product's TCB")
        elif tcb[name] < minimum:
            low.append(f"{name}SPL {tcb[name]} < {minimum}")
    if policy.min_guest_svn is not None and report.guest_svn < policy.min_guest_svn:
        low.append(f"GUEST_SVN {report.guest_svn} < {policy.min_guest_svn}")
    if low:
        appraisal.add("min_tcb", False, "; ".join(low))
    else:
        appraisal.add("min_tcb", True, "REPORTED_TCB and GUEST_SVN meet the minimums")


def appraise_sev_snp(
    evidence: bytes,
    *,
    endorsements: Sequence[bytes],
    now: datetime,
    policy: Policy,
    roots: Mapping[str, str] = AMD_ARK_FINGERPRINTS,
) -> Appraisal:
    """Appraise a raw SEV-SNP report.

    Args:
        evidence: the 1184-byte ATTESTATION_REPORT.
        endorsements: VCEK/VLEK (DER or PEM) and the ASK/ASVK + ARK chain (PEM).
        now: the time the certificates must be valid at.
        policy: the appraisal policy.
        roots: pinned ARK fingerprints → product name (the AMD ARKs unless testing).

    Raises:
        MalformedError: the report or an endorsement does not parse.
    """
    require_aware(now)
    report = parse_report(evidence)
    certs, _ = _x509.parse_endorsements(endorsements)
    appraisal = Appraisal(kind="sev-snp")

    # (1) The signing key's chain to a pinned ARK.
    leaf = None
    product = _product_from_cpuid(report.cpuid)
    key_name = "VLEK" if report.signing_key == SIGNING_KEY_VLEK else "VCEK"
    if report.signing_key == SIGNING_KEY_NONE:
        appraisal.add("vcek_chain", False, "the report is unsigned (SIGNING_KEY = none)")
    else:
        leaf = _pick_signing_cert(report, certs)
        if leaf is None:
            appraisal.add("vcek_chain", False, f"no {key_name} (EC P-384) among the endorsements")
        else:
            chain = _x509.verify_chain(leaf, certs, roots, now)
            ok, reason = chain.ok, chain.reason
            if ok:
                product = chain.root_name
                ok, reason = _check_key_kind(chain.path, report.signing_key, reason)
            appraisal.add("vcek_chain", ok, f"{key_name}: {reason}")
    product = product or "Milan"

    # (2) The report signature.
    if leaf is None:
        appraisal.add("report_signature", False, f"no {key_name} to verify the signature with")
    else:
        appraisal.add("report_signature", *_verify_signature(report, leaf))

    # (3, 4) The certificate is the one for this chip and TCB.
    _check_vcek_extensions(appraisal, report, leaf, product)

    # (5) Policy.
    tcb = decode_tcb(report.reported_tcb, product)
    check_debug(appraisal, policy, debug=report.debug, what="POLICY.DEBUG")
    if not report.migration_agent:
        appraisal.add("migration_agent_disabled", True, "POLICY.MIGRATE_MA is clear")
    else:
        allowed = policy.allow_migration_agent
        appraisal.add(
            "migration_agent_disabled",
            allowed,
            "POLICY.MIGRATE_MA is set, " + ("allowed by policy" if allowed else "refused by policy"),
        )
    vmpl_ok = report.vmpl in policy.allowed_vmpl
    appraisal.add(
        "vmpl_allowed",
        vmpl_ok,
        f"VMPL {report.vmpl} is {'' if vmpl_ok else 'not '}in {sorted(policy.allowed_vmpl)}",
    )
    _check_min_tcb(appraisal, policy, report, tcb)
    check_measurement(appraisal, policy, report.measurement)
    registers = {
        "host_data": report.host_data,
        "id_key_digest": report.id_key_digest,
        "author_key_digest": report.author_key_digest,
        "family_id": report.family_id,
        "image_id": report.image_id,
    }
    check_registers(appraisal, policy, registers)
    check_report_data(appraisal, policy, report.report_data, pad_to=64, what="REPORT_DATA")

    appraisal.claims = {
        "kind": "sev-snp",
        "measurement": report.measurement.hex(),
        "report_data": report.report_data.hex(),
        "debug": report.debug,
        "version": report.version,
        "product": product,
        "signing_key": {SIGNING_KEY_VCEK: "vcek", SIGNING_KEY_VLEK: "vlek"}.get(
            report.signing_key, "none"
        ),
        "policy": f"{report.policy:#x}",
        "migration_agent": report.migration_agent,
        "vmpl": report.vmpl,
        "guest_svn": report.guest_svn,
        "reported_tcb": f"{int.from_bytes(report.reported_tcb, 'little'):#018x}",
        "reported_tcb_spl": tcb,
        "current_tcb": f"{int.from_bytes(report.current_tcb, 'little'):#018x}",
        "chip_id": report.chip_id.hex(),
        **{name: value.hex() for name, value in registers.items()},
    }
    return appraisal
