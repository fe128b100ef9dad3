"""Intel TDX TCB status: a quote judged against Intel's TCB Info and QE Identity collateral.

Collateral (Intel PCS ``tdx/certification/v4/tcb`` and ``…/qe/identity``; layouts in
../shared/docs/tee-evidence-formats.md §2) is signed JSON: ``{"tcbInfo": {…}, "signature": hex}``
where the ECDSA P-256 / SHA-256 signature (r‖s) covers **the exact bytes** of the inner object's
text. The signer is "Intel SGX TCB Signing", whose certificate must chain to the pinned Intel SGX
Root CA (CRLs checked when given). Nothing is fetched: collateral comes from files or from the
ledger (admin key events), and is judged at ``now`` (``issueDate <= now <= nextUpdate``).

The evaluation follows Intel's quote verification library (TcbLevelCheck, TdxModuleCheck):

1. The PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1) gives the FMSPC, the PCE id,
   the 16 SGX TCB component SVNs and the PCESVN. The TCB Info must be for that FMSPC and PCE id.
2. Platform level: the first ``tcbLevels`` entry (Intel lists them best first) whose 16
   ``sgxtcbcomponents`` and ``pcesvn`` are all ``<=`` the PCK's, then, from there on, the first
   whose 16 ``tdxtcbcomponents`` are ``<=`` the quote's TEE_TCB_SVN. When TEE_TCB_SVN[1] (the TDX
   module major version) is non-zero its first two bytes are the module's SVN and version, judged
   by the module identity (step 3) and skipped here.
3. TDX module: version 0 is judged by ``tdxModule`` (MRSIGNERSEAM and SEAM_ATTRIBUTES under the
   mask). Version v > 0 needs the ``tdxModuleIdentities`` entry ``TDX_%02X`` (same MRSIGNER and
   attribute rules) and its first ``tcbLevels`` entry with ``isvsvn <= TEE_TCB_SVN[0]``; an
   out-of-date or revoked module pulls the platform status down.
4. QE identity: the QE report's MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES (under the masks)
   must match, and its first level with ``isvsvn <=`` the QE's ISVSVN pulls the status down the
   same way.
5. TD 1.5 (a v5 quote of body type 3): TEE_TCB_SVN is the module the TD was launched under and
   TEE_TCB_SVN2 the module running now (after a TD-preserving update). Both are judged by steps
   2-4; when the launch status is OutOfDate or OutOfDateConfigurationNeeded and the current one
   is UpToDate, SWHardeningNeeded, ConfigurationNeeded or ConfigurationAndSWHardeningNeeded, the
   status is TDRelaunchAdvised (TDRelaunchAdvisedConfigurationNeeded when either needs
   configuration): relaunching the TD would bring it up to the module now running. Otherwise
   the launch status stands. The advisories are those of both.

The result is one of :data:`STATUSES` plus the union of the advisory IDs of the levels used; a
platform below every level is :data:`NOT_SUPPORTED` (refused whatever the policy says).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import ObjectIdentifier, UnrecognizedExtension

import ledger.attestation._der as _der
import ledger.attestation._x509 as _x509
from ledger.errors import MalformedError

__all__ = [
    "NOT_SUPPORTED",
    "LEVEL_STATUSES",
    "RELAUNCH_ADVISED",
    "RELAUNCH_ADVISED_CONFIGURATION_NEEDED",
    "STATUSES",
    "PckTcb",
    "SignedJson",
    "TcbEvaluation",
    "TdxCollateral",
    "evaluate_tcb",
    "parse_pck_tcb",
    "parse_signed_json",
]

#: the statuses a TCB Info level can carry
LEVEL_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
#: a TD 1.5 quote whose TD launched under an out-of-date module that has since been updated in
#: place to one that is not out of date (Intel's relaunch check; step 5 of the module docstring)
RELAUNCH_ADVISED = "TDRelaunchAdvised"
RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"
#: every status an evaluation can report
STATUSES = (*LEVEL_STATUSES[:6], RELAUNCH_ADVISED, RELAUNCH_ADVISED_CONFIGURATION_NEEDED, LEVEL_STATUSES[6])
NOT_SUPPORTED = "TcbNotSupported"
#: a PCS response is a few KiB (the largest TCB Info today is ~10 KiB)
MAX_COLLATERAL_BYTES = 256 * 1024

OID_SGX_EXTENSION = ObjectIdentifier("1.2.840.113741.1.13.1")
_SGX = "1.2.840.113741.1.13.1"
_QE_STATUSES = ("UpToDate", "OutOfDate", "Revoked")


# ------------------------------------------------------------------------------ the PCK's TCB


@dataclass(frozen=True)
class PckTcb:
    """What the PCK certificate's SGX extension says about the platform."""

    fmspc: bytes
    pce_id: bytes
    sgx_svns: tuple[int, ...]  # 16 component SVNs
    pcesvn: int


@_x509.register_cache
@lru_cache(maxsize=256)
def parse_pck_tcb(pck_der: bytes) -> PckTcb:
    """Read FMSPC, PCE-ID, the component SVNs and PCESVN from a PCK certificate.

    Raises:
        MalformedError: the extension is missing or does not have Intel's structure.
    """
    cert = _x509.load_der(pck_der)
    raw = None
    with _x509.quiet():
        for ext in cert.extensions:
            if ext.oid == OID_SGX_EXTENSION and isinstance(ext.value, UnrecognizedExtension):
                raw = bytes(ext.value.value)
    if raw is None:
        msg = "the PCK certificate has no Intel SGX extension (1.2.840.113741.1.13.1)"
        raise MalformedError(msg)
    what = "the PCK certificate's SGX extension"
    top = _der.read_all(raw, what)
    if len(top) != 1:
        msg = f"{what} is not one SEQUENCE"
        raise MalformedError(msg)
    fields: dict[str, _der.Tlv] = {}
    for item in top[0].children(what):
        parts = item.children(what, 1)
        if len(parts) != 2:  # noqa: PLR2004 - (OID, value)
            msg = f"{what} has an entry that is not (OID, value)"
            raise MalformedError(msg)
        fields[_der.decode_oid(parts[0], what)] = parts[1]
    try:
        tcb, pce_id, fmspc = fields[f"{_SGX}.2"], fields[f"{_SGX}.3"], fields[f"{_SGX}.4"]
    except KeyError as exc:
        msg = f"{what} lacks {exc.args[0]} (TCB, PCE-ID and FMSPC are required)"
        raise MalformedError(msg) from None
    components: dict[str, _der.Tlv] = {}
    for item in tcb.children(f"{what} TCB", 2):
        parts = item.children(f"{what} TCB", 3)
        if len(parts) != 2:  # noqa: PLR2004
            msg = f"{what} TCB has an entry that is not (OID, value)"
            raise MalformedError(msg)
        components[_der.decode_oid(parts[0], what)] = parts[1]
    try:
        svns = tuple(_der.decode_integer(components[f"{_SGX}.2.{i}"], f"SGX TCB component {i}") for i in range(1, 17))
        pcesvn = _der.decode_integer(components[f"{_SGX}.2.17"], "PCESVN")
    except KeyError as exc:
        msg = f"{what} TCB lacks {exc.args[0]}"
        raise MalformedError(msg) from None
    if fmspc.tag != _der.OCTET_STRING or len(fmspc.value) != 6 or pce_id.tag != _der.OCTET_STRING or len(pce_id.value) != 2:  # noqa: PLR2004
        msg = f"{what} has a malformed FMSPC or PCE-ID"
        raise MalformedError(msg)
    return PckTcb(fmspc=fmspc.value, pce_id=pce_id.value, sgx_svns=svns, pcesvn=pcesvn)


# ------------------------------------------------------------------------------ signed JSON


@dataclass(frozen=True)
class SignedJson:
    """A PCS response: ``key`` names the body (``tcbInfo`` or ``enclaveIdentity``)."""

    key: str
    body: dict[str, Any]
    signed_bytes: bytes  # the exact text of the body object
    signature: bytes  # r‖s, 64 bytes
    raw: bytes


def _members(text: str, what: str) -> dict[str, tuple[Any, int, int]]:
    """The top-level members of a JSON object with the character span of each value."""
    decoder = json.JSONDecoder()
    ws = " \t\n\r"
    i = 0
    n = len(text)

    def skip(pos: int) -> int:
        while pos < n and text[pos] in ws:
            pos += 1
        return pos

    i = skip(i)
    if i >= n or text[i] != "{":
        msg = f"{what} is not a JSON object"
        raise MalformedError(msg)
    i = skip(i + 1)
    out: dict[str, tuple[Any, int, int]] = {}
    try:
        while i < n and text[i] != "}":
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            if not isinstance(key, str) or i >= n or text[i] != ":":
                raise ValueError("expected a string key and ':'")
            i = skip(i + 1)
            value, end = decoder.raw_decode(text, i)
            if key in out:
                msg = f"{what} has the member {key!r} twice"
                raise MalformedError(msg)
            out[key] = (value, i, end)
            i = skip(end)
            if i < n and text[i] == ",":
                i = skip(i + 1)
            elif i < n and text[i] != "}":
                raise ValueError("expected ',' or '}'")
    except ValueError as exc:
        msg = f"{what} is not valid JSON: {exc}"
        raise MalformedError(msg) from exc
    except RecursionError:
        msg = f"{what} nests arrays and objects too deep"
        raise MalformedError(msg) from None
    if i >= n or skip(i + 1) != n:
        msg = f"{what} is not one complete JSON object"
        raise MalformedError(msg)
    return out


def parse_signed_json(raw: bytes, what: str = "collateral") -> SignedJson:
    """Parse a PCS TCB Info or QE Identity response, keeping the signed bytes exactly.

    Raises:
        MalformedError: oversized, not UTF-8 JSON, not ``{<body>: {...}, "signature": hex}``.
    """
    raw = bytes(raw)
    if len(raw) > MAX_COLLATERAL_BYTES:
        msg = f"{what} is larger than {MAX_COLLATERAL_BYTES} bytes"
        raise MalformedError(msg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{what} is not UTF-8"
        raise MalformedError(msg) from exc
    members = _members(text, what)
    keys = set(members) - {"signature"}
    if "signature" not in members or len(keys) != 1 or not keys <= {"tcbInfo", "enclaveIdentity"}:
        msg = f"{what} must hold exactly a tcbInfo or enclaveIdentity object and a signature"
        raise MalformedError(msg)
    key = keys.pop()
    body, start, end = members[key]
    signature_hex = members["signature"][0]
    if not isinstance(body, dict):
        msg = f"{what}: {key} is not an object"
        raise MalformedError(msg)
    try:
        signature = bytes.fromhex(signature_hex) if isinstance(signature_hex, str) else b""
    except ValueError:
        signature = b""
    if len(signature) != 64:  # noqa: PLR2004
        msg = f"{what}: the signature is not 64 bytes of hex (r‖s)"
        raise MalformedError(msg)
    return SignedJson(key, body, text[start:end].encode("utf-8"), signature, raw)


# ------------------------------------------------------------------------------ collateral


@dataclass(frozen=True)
class TdxCollateral:
    """The files a TCB judgement needs, as raw bytes (recorded in the log as they are)."""

    tcb_infos: tuple[bytes, ...] = ()
    qe_identities: tuple[bytes, ...] = ()
    certificates: tuple[bytes, ...] = ()  # DER: the TCB Signing chain (and any CA)
    crls: tuple[bytes, ...] = ()  # DER

    @classmethod
    def from_files(cls, blobs: Sequence[bytes]) -> TdxCollateral:
        """Sort files by content: PCS JSON (TCB Info / QE Identity), PEM or DER certificates and CRLs.

        Raises:
            MalformedError: a file is none of these.
        """
        tcb_infos: list[bytes] = []
        identities: list[bytes] = []
        other: list[bytes] = []
        for blob in blobs:
            blob = bytes(blob)
            if blob.lstrip()[:1] == b"{":
                signed = parse_signed_json(blob)
                (tcb_infos if signed.key == "tcbInfo" else identities).append(blob)
            else:
                other.append(blob)
        certs, crls = _x509.parse_endorsements(other)
        return cls(tuple(tcb_infos), tuple(identities), tuple(certs), tuple(crls))

    def merged(self, other: TdxCollateral) -> TdxCollateral:
        def union(a: tuple[bytes, ...], b: tuple[bytes, ...]) -> tuple[bytes, ...]:
            return tuple(dict.fromkeys(a + b))

        return TdxCollateral(
            union(self.tcb_infos, other.tcb_infos),
            union(self.qe_identities, other.qe_identities),
            union(self.certificates, other.certificates),
            union(self.crls, other.crls),
        )

    def __bool__(self) -> bool:
        return bool(self.tcb_infos or self.qe_identities)


@dataclass
class TcbEvaluation:
    """What :func:`evaluate_tcb` found: named checks and, when it got that far, the status."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    fmspc: str | None = None
    tcb_date: str | None = None
    tcb_evaluation_data_number: int | None = None


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        msg = f"{what} is not an RFC 3339 string"
        raise MalformedError(msg)
    try:
        out = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        msg = f"{what} {value!r} is not an RFC 3339 time"
        raise MalformedError(msg) from exc
    if out.tzinfo is None:
        msg = f"{what} {value!r} has no time zone"
        raise MalformedError(msg)
    return out


@_x509.register_cache
@lru_cache(maxsize=256)
def _signer_of(signed_bytes: bytes, signature: bytes, pool: tuple[bytes, ...]) -> bytes | None:
    """The certificate among ``pool`` whose P-256 key made ``signature`` (cached: bytes only)."""
    der_sig = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    for der in pool:
        key = _x509.load_der(der).public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            continue
        try:
            key.verify(der_sig, signed_bytes, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return der
    return None


def _verify_signed(
    signed: SignedJson, pool: Sequence[bytes], crls: Sequence[bytes], roots: Mapping[str, str], now: datetime
) -> tuple[bool, str]:
    """The signature by a certificate that chains to a pinned root, the CRLs, the validity window."""
    signer = _signer_of(signed.signed_bytes, signed.signature, tuple(pool))
    if signer is None:
        return False, "the signature does not verify with any supplied certificate (bad signature or no TCB Signing certificate)"
    chain = _x509.verify_chain(signer, pool, roots, now)
    if not chain.ok:
        return False, f"signer chain: {chain.reason}"
    subjects = {_x509.load_der(d).subject for d in chain.path}
    relevant = [c for c in crls if _x509.crl_issuer(c) in subjects]
    crl_note = ""
    if relevant:
        ok, why = _x509.verify_crls(chain.path, relevant, now)
        if not ok:
            return False, f"signer chain: {why}"
        crl_note = f", {len(relevant)} CRL(s) checked"
    body = signed.body
    issued = _time(body.get("issueDate"), f"{signed.key}.issueDate")
    next_update = _time(body.get("nextUpdate"), f"{signed.key}.nextUpdate")
    if now < issued:
        return False, f"issued at {body['issueDate']}, after the appraisal time {now.isoformat()}"
    if now > next_update:
        return False, f"expired: nextUpdate {body['nextUpdate']} is before the appraisal time {now.isoformat()}"
    return True, f"signed by {_x509.describe(signer)} (chain to the pinned root{crl_note}), current until {body['nextUpdate']}"


def _int_list(level: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    comps = level.get(key)
    if not isinstance(comps, list) or len(comps) != 16:  # noqa: PLR2004
        msg = f"{what}.{key} must list 16 components"
        raise MalformedError(msg)
    out = []
    for c in comps:
        svn = c.get("svn") if isinstance(c, dict) else None
        if type(svn) is not int or not 0 <= svn <= 255:  # noqa: PLR2004
            msg = f"{what}.{key} has a component without an svn in 0..255"
            raise MalformedError(msg)
        out.append(svn)
    return tuple(out)


def _status(level: Mapping[str, Any], what: str, allowed: Sequence[str] = LEVEL_STATUSES) -> str:
    status = level.get("tcbStatus")
    if status not in allowed:
        msg = f"{what}.tcbStatus {status!r} is not one of {', '.join(allowed)}"
        raise MalformedError(msg)
    return str(status)


def _advisories(level: Mapping[str, Any]) -> list[str]:
    ids = level.get("advisoryIDs") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        msg = "advisoryIDs must be a list of strings"
        raise MalformedError(msg)
    return ids


def _converge(platform: str, other: str) -> str:
    """Intel's convergence of the platform status with an out-of-date or revoked QE or module."""
    if other == "Revoked":
        return "Revoked"
    if other == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


_RELAUNCH_FROM = ("OutOfDate", "OutOfDateConfigurationNeeded")
_RELAUNCH_TO = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded")
_CONFIGURATION_NEEDED = ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDateConfigurationNeeded")


def relaunch_status(launch: str, current: str) -> str:
    """Step 5: the status of a TD 1.5 quote from its launch and current module statuses."""
    if launch in _RELAUNCH_FROM and current in _RELAUNCH_TO:
        if launch in _CONFIGURATION_NEEDED or current in _CONFIGURATION_NEEDED:
            return RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return RELAUNCH_ADVISED
    return launch


def _list(doc: Mapping[str, Any], key: str, what: str) -> list[Any]:
    """``doc[key]``, a list (absent: empty); MalformedError for anything else."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        msg = f"{what}.{key} is not a list"
        raise MalformedError(msg)
    return value


def _isvsvn(level: Any) -> Any:
    """A level's ``tcb.isvsvn`` (None when the level or its tcb is not an object)."""
    tcb = level.get("tcb") if isinstance(level, dict) else None
    return tcb.get("isvsvn") if isinstance(tcb, dict) else None


def _hex_field(doc: Mapping[str, Any], key: str, size: int, what: str) -> bytes:
    value = doc.get(key)
    try:
        out = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        out = b""
    if len(out) != size:
        msg = f"{what}.{key} is not {size} bytes of hex"
        raise MalformedError(msg)
    return out


def _platform_level(
    levels: list[Any], pck: PckTcb, tee_tcb_svn: bytes
) -> tuple[Mapping[str, Any] | None, str]:
    skip = 2 if tee_tcb_svn[1] > 0 else 0
    sgx_found = False
    for n, level in enumerate(levels):
        what = f"tcbInfo.tcbLevels[{n}]"
        tcb = level.get("tcb") if isinstance(level, dict) else None
        if not isinstance(tcb, dict):
            msg = f"{what}.tcb is not an object"
            raise MalformedError(msg)
        pcesvn = tcb.get("pcesvn")
        if type(pcesvn) is not int:
            msg = f"{what}.tcb.pcesvn is not an integer"
            raise MalformedError(msg)
        sgx = _int_list(tcb, "sgxtcbcomponents", what)
        tdx = _int_list(tcb, "tdxtcbcomponents", what)
        if not sgx_found:
            sgx_found = all(p >= s for p, s in zip(pck.sgx_svns, sgx, strict=True)) and pck.pcesvn >= pcesvn
            if sgx_found and level.get("tcbStatus") == "Revoked":
                return level, ""  # Intel: a revoked SGX TCB is revoked whatever the TDX components say
        if sgx_found and all(q >= t for q, t in list(zip(tee_tcb_svn, tdx, strict=True))[skip:]):
            return level, ""
    if not sgx_found:
        return None, "the PCK's SGX TCB (component SVNs and PCESVN) is below every TCB level"
    return None, f"TEE_TCB_SVN {tee_tcb_svn.hex()} is below every TCB level the SGX TCB meets"


def _module_status(body: Mapping[str, Any], tee_tcb_svn: bytes, mrsignerseam: bytes, seam_attributes: bytes) -> tuple[str | None, list[str], str]:
    """(status or None when not found, advisories, reason)."""
    version, isvsvn = tee_tcb_svn[1], tee_tcb_svn[0]

    def identity_matches(identity: Mapping[str, Any], what: str) -> str | None:
        mrsigner = _hex_field(identity, "mrsigner", 48, what)
        attributes = _hex_field(identity, "attributes", 8, what)
        mask = _hex_field(identity, "attributesMask", 8, what)
        if mrsigner != mrsignerseam:
            return f"MRSIGNERSEAM {mrsignerseam.hex()[:16]}… differs from {what}.mrsigner"
        if bytes(a & m for a, m in zip(seam_attributes, mask, strict=True)) != attributes:
            return f"SEAM_ATTRIBUTES {seam_attributes.hex()} under the mask differ from {what}.attributes"
        return None

    if version == 0:
        module = body.get("tdxModule")
        if not isinstance(module, dict):
            msg = "tcbInfo.tdxModule is missing"
            raise MalformedError(msg)
        why = identity_matches(module, "tcbInfo.tdxModule")
        return (None, [], why) if why else ("UpToDate", [], "TDX module version 0 matches tdxModule")
    wanted = f"TDX_{version:02X}"
    for n, identity in enumerate(_list(body, "tdxModuleIdentities", "tcbInfo")):
        what = f"tcbInfo.tdxModuleIdentities[{n}]"
        if not isinstance(identity, dict) or identity.get("id") != wanted:
            continue
        why = identity_matches(identity, what)
        if why:
            return None, [], why
        for m, level in enumerate(_list(identity, "tcbLevels", what)):
            svn = _isvsvn(level)
            if type(svn) is not int:
                msg = f"{what}.tcbLevels[{m}].tcb.isvsvn is not an integer"
                raise MalformedError(msg)
            if isvsvn >= svn:
                status = _status(level, f"{what}.tcbLevels[{m}]")
                return status, _advisories(level), f"TDX module {wanted} SVN {isvsvn}: {status}"
        return None, [], f"TDX module {wanted} SVN {isvsvn} is below every level of its identity"
    return None, [], f"the TCB Info has no TDX module identity {wanted}"


def _qe_status(body: Mapping[str, Any], qe_report: bytes) -> tuple[str | None, list[str], str]:
    what = "enclaveIdentity"
    mrsigner = _hex_field(body, "mrsigner", 32, what)
    miscselect = _hex_field(body, "miscselect", 4, what)
    misc_mask = _hex_field(body, "miscselectMask", 4, what)
    attributes = _hex_field(body, "attributes", 16, what)
    attr_mask = _hex_field(body, "attributesMask", 16, what)
    isvprodid = body.get("isvprodid")
    qe_misc = qe_report[0x10:0x14][::-1]  # MISCSELECT is a little-endian u32; the JSON is big-endian hex
    qe_attr = qe_report[0x30:0x40]
    if qe_report[0x80:0xA0] != mrsigner:
        return None, [], "the QE's MRSIGNER differs from the QE Identity's"
    if int.from_bytes(qe_report[0x100:0x102], "little") != isvprodid:
        return None, [], f"the QE's ISVPRODID differs from the QE Identity's {isvprodid}"
    if bytes(a & m for a, m in zip(qe_misc, misc_mask, strict=True)) != miscselect:
        return None, [], "the QE's MISCSELECT under the mask differs from the QE Identity's"
    if bytes(a & m for a, m in zip(qe_attr, attr_mask, strict=True)) != attributes:
        return None, [], "the QE's ATTRIBUTES under the mask differ from the QE Identity's"
    qe_svn = int.from_bytes(qe_report[0x102:0x104], "little")
    for n, level in enumerate(_list(body, "tcbLevels", what)):
        svn = _isvsvn(level)
        if type(svn) is not int:
            msg = f"{what}.tcbLevels[{n}].tcb.isvsvn is not an integer"
            raise MalformedError(msg)
        if qe_svn >= svn:
            status = _status(level, f"{what}.tcbLevels[{n}]", _QE_STATUSES)
            return status, _advisories(level), f"QE ISVSVN {qe_svn}: {status}"
    return None, [], f"QE ISVSVN {qe_svn} is below every level of the QE Identity"


def evaluate_tcb(
    *,
    pck_der: bytes,
    tee_tcb_svn: bytes,
    mrsignerseam: bytes,
    seam_attributes: bytes,
    qe_report: bytes,
    collateral: TdxCollateral,
    extra_certificates: Sequence[bytes],
    now: datetime,
    roots: Mapping[str, str],
    tee_tcb_svn2: bytes | None = None,
) -> TcbEvaluation:
    """Judge a verified quote's TCB against the collateral (see the module docstring).

    ``tee_tcb_svn2``: a TD 1.5 quote's TEE_TCB_SVN2 (step 5); None for other quotes.

    Checks made: ``tcb_info`` (found for the FMSPC, signed, chained, current),
    ``qe_identity_collateral`` (the same for the QE Identity, and the QE matches it) and, when
    both hold, the ``status``. Raises MalformedError for collateral that does not parse.
    """
    result = TcbEvaluation()
    pck = parse_pck_tcb(pck_der)
    result.fmspc = pck.fmspc.hex()
    pool = list(dict.fromkeys([*collateral.certificates, *extra_certificates]))

    tcb_info = None
    fmspcs = []
    for blob in collateral.tcb_infos:
        signed = parse_signed_json(blob, "TCB Info")
        body = signed.body
        fmspcs.append(str(body.get("fmspc")))
        if str(body.get("fmspc", "")).lower() == pck.fmspc.hex() and body.get("id") == "TDX":
            tcb_info = signed
    if tcb_info is None:
        found = ", ".join(fmspcs) or "none"
        result.checks.append(("tcb_info", False, f"no TDX TCB Info for the PCK's FMSPC {pck.fmspc.hex()} (have: {found})"))
    else:
        body = tcb_info.body
        ok, why = _verify_signed(tcb_info, pool, collateral.crls, roots, now)
        if ok and body.get("version") != 3:  # noqa: PLR2004
            ok, why = False, f"TCB Info version {body.get('version')!r} is not 3"
        if ok and str(body.get("pceId", "")).lower() != pck.pce_id.hex():
            ok, why = False, f"TCB Info pceId {body.get('pceId')!r} differs from the PCK's {pck.pce_id.hex()}"
        result.checks.append(("tcb_info", ok, f"TCB Info for FMSPC {pck.fmspc.hex()}: {why}"))
        if not ok:
            tcb_info = None

    identity = None
    qe_status: str | None = None
    qe_advisories: list[str] = []
    for blob in collateral.qe_identities:
        signed = parse_signed_json(blob, "QE Identity")
        if signed.key == "enclaveIdentity" and signed.body.get("id") == "TD_QE":
            identity = signed
    if identity is None:
        result.checks.append(("qe_identity_collateral", False, "no TD_QE identity among the collateral"))
    else:
        ok, why = _verify_signed(identity, pool, collateral.crls, roots, now)
        if ok:
            qe_status, qe_advisories, qe_why = _qe_status(identity.body, qe_report)
            ok = qe_status is not None
            why = f"{why}; {qe_why}"
        result.checks.append(("qe_identity_collateral", ok, f"TD_QE identity: {why}"))
        if not ok:
            identity = None

    if tcb_info is None or identity is None or qe_status is None:
        return result
    body = tcb_info.body
    levels = body.get("tcbLevels")
    if not isinstance(levels, list):
        msg = "tcbInfo.tcbLevels is not a list"
        raise MalformedError(msg)
    result.tcb_evaluation_data_number = body.get("tcbEvaluationDataNumber")
    launch = _judge_tee_tcb_svn(body, levels, pck, tee_tcb_svn, mrsignerseam, seam_attributes, qe_status, qe_advisories)
    if launch.status is None:
        result.status = NOT_SUPPORTED
        result.checks.append(("tcb_level", False, launch.why))
        return result
    result.tcb_date = launch.tcb_date
    status, advisories, why = launch.status, launch.advisories, launch.why
    if tee_tcb_svn2 is not None:
        current = _judge_tee_tcb_svn(body, levels, pck, tee_tcb_svn2, mrsignerseam, seam_attributes, qe_status, qe_advisories)
        if current.status is None:
            result.status = NOT_SUPPORTED
            result.checks.append(("tcb_level", False, f"TEE_TCB_SVN2 (the module running now): {current.why}"))
            return result
        status = relaunch_status(launch.status, current.status)
        advisories = advisories | current.advisories
        why = f"at launch (TEE_TCB_SVN): {launch.why}; now (TEE_TCB_SVN2): {current.why}; so {status}"
    result.status = status
    result.advisory_ids = tuple(sorted(advisories))
    result.checks.append(("tcb_level", True, why))
    return result


@dataclass(frozen=True)
class _Judged:
    """Steps 2-4 for one TEE_TCB_SVN: the status (None: not supported) and why."""

    status: str | None
    why: str
    advisories: frozenset[str] = frozenset()
    tcb_date: str | None = None


def _judge_tee_tcb_svn(
    body: Mapping[str, Any], levels: list[Any], pck: PckTcb, tee_tcb_svn: bytes, mrsignerseam: bytes,
    seam_attributes: bytes, qe_status: str, qe_advisories: list[str],
) -> _Judged:
    level, why = _platform_level(levels, pck, tee_tcb_svn)
    if level is None:
        return _Judged(None, why)
    platform = _status(level, "tcbInfo.tcbLevels[]")
    module_status, module_advisories, module_why = _module_status(body, tee_tcb_svn, mrsignerseam, seam_attributes)
    if module_status is None:
        return _Judged(None, module_why)
    status = _converge(_converge(platform, module_status), qe_status)
    return _Judged(
        status,
        f"platform level {platform} (tcbDate {level.get('tcbDate')}), {module_why}, QE {qe_status}: {status}",
        frozenset(_advisories(level)) | frozenset(module_advisories) | frozenset(qe_advisories),
        level.get("tcbDate"),
    )
