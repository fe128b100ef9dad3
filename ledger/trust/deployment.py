"""Deployment records: an artifact bound to TEE evidence of the host that runs it (pure).

A deployment is an in-toto Statement whose subject is the deployed artifact and whose predicate
(``https://provenance-ledger.dev/deployment/v1``, ``schemas/deployment.v1.json``) carries the
artifact digest, the host id, the environment, a nonce and the host's attestation evidence.

**Binding.** The evidence must carry a hash of the deployment, so that it cannot be replayed for
another artifact or host::

    binding = SHA-512("provenance-ledger/deployment/v1\\n" || artifact sha256 (lowercase hex)
                      || "\\n" || host id (UTF-8) || "\\n" || nonce (lowercase hex))

SEV-SNP and TDX REPORT_DATA (64 bytes) must equal ``binding``; a TPM quote's extraData and a
Nitro document's ``nonce`` must equal its first 32 bytes (a truncation of that SHA-512 value, not
SHA-512/256). The host id may not contain a line break (the schema refuses it), so the encoding
is unambiguous.

**Appraisal** (:func:`appraise_deployment`): ``ledger.attestation`` verifies the evidence to the
vendor root pinned in code (SEV-SNP, TDX, Nitro) or, for TPM quotes, to a root from the
configured trust folder (never from the evidence), with debug guests refused and the binding
demanded. The ledger then adds ``firmware_measurement_matches`` (:func:`match_firmware`): the
evidence's launch measurement must equal the measurements of a firmware-image record in the
ledger whose signers are trusted for it. The stored document (:func:`appraisal_document`) is
EAR-like: a verdict, every check with ``ok`` and ``reason``, and the claims.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ledger.attestation import Appraisal, TdxCollateral, nitro, sev_snp, tdx, tpm
from ledger.attestation.policy_document import PolicyDocument, default_document
from ledger.errors import MalformedError
from ledger.untrusted.x509 import load_der_certificate, load_pem_certificates

__all__ = [
    "BINDING_CONTEXT",
    "FIRMWARE_CHECK",
    "Deployment",
    "FirmwareCandidate",
    "VendorRoot",
    "appraisal_document",
    "appraise_deployment",
    "binding",
    "expected_report_data",
    "failed_checks",
    "firmware_measurements",
    "judge_deployment",
    "match_firmware",
    "measurement_matches",
    "measurement_summary",
    "parse_deployment",
    "policy_info",
    "refusal_message",
    "tpm_roots_in",
    "unappraisable_document",
]

BINDING_CONTEXT = b"provenance-ledger/deployment/v1\n"
FIRMWARE_CHECK = "firmware_measurement_matches"
#: how the vendor roots pinned in code are named in chains and appraisals
_VENDORS = {"sev-snp": "AMD SEV-SNP ARK", "tdx": "Intel", "nitro": "AWS"}


@dataclass(frozen=True)
class Deployment:
    """A deployment predicate, decoded (evidence and endorsements as bytes)."""

    artifact: str  # lowercase sha256 hex
    host_id: str
    environment: str
    evidence_type: str
    evidence: bytes
    endorsements: tuple[bytes, ...]
    nonce: str  # lowercase hex

    @property
    def binding(self) -> bytes:
        return binding(self.artifact, self.host_id, self.nonce)


@dataclass(frozen=True)
class VendorRoot:
    """The root certificate a verified chain ended at."""

    name: str
    fingerprint: str  # hex SHA-256 of the DER


@dataclass(frozen=True)
class FirmwareCandidate:
    """A firmware-image record, as the measurement match needs it."""

    index: int
    name: str
    #: the predicate's ``measurements`` object
    measurements: Mapping[str, Any]
    #: None when trusted, else why not (``ledger.trust.policy.judge``'s reasons)
    untrusted_because: str | None = None


def binding(artifact_sha256: str, host_id: str, nonce_hex: str) -> bytes:
    """The 64-byte SHA-512 a deployment's evidence must carry (see the module docstring)."""
    text = f"{artifact_sha256.lower()}\n{host_id}\n{nonce_hex.lower()}".encode()
    return hashlib.sha512(BINDING_CONTEXT + text).digest()


def expected_report_data(evidence_type: str, value: bytes) -> bytes:
    """What the evidence's binding field must hold: 64 bytes (SNP, TDX) or the first 32 (TPM, Nitro)."""
    return value if evidence_type in ("sev-snp", "tdx") else value[:32]


def _b64(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{field} is not valid base64") from exc


def parse_deployment(predicate: Mapping[str, Any], subjects: Sequence[tuple[str, str, str]]) -> Deployment:
    """Decode a schema-valid deployment predicate and check it names its statement's subject.

    Args:
        predicate: the predicate (already validated against ``deployment.v1.json``).
        subjects: the statement's (algorithm, lowercase digest, name) triples.

    Raises:
        MalformedError: base64 that does not decode, or a subject that is not the artifact.
    """
    artifact = str(predicate["artifact"]["sha256"]).lower()
    if not subjects or any(alg != "sha256" or digest != artifact for alg, digest, _ in subjects):
        raise MalformedError(
            f"predicate.artifact.sha256 {artifact} must be the statement's subject: a deployment's "
            "subject is the deployed artifact (one sha256 digest)"
        )
    evidence = predicate["evidence"]
    data = _b64(evidence["data"], "predicate.evidence.data")
    endorsements = tuple(
        _b64(e, f"predicate.evidence.endorsements[{i}]") for i, e in enumerate(evidence.get("endorsements") or ())
    )
    return Deployment(
        artifact=artifact,
        host_id=str(predicate["host_id"]),
        environment=str(predicate["environment"]),
        evidence_type=str(evidence["type"]),
        evidence=data,
        endorsements=endorsements,
        nonce=str(predicate["nonce"]).lower(),
    )


# ------------------------------------------------------------------------------ appraisal


def _certificates(blobs: Sequence[bytes]) -> list[bytes]:
    """DER of every certificate in PEM or DER blobs (what does not parse is skipped: the
    appraisal itself already refused malformed endorsements)."""
    out: list[bytes] = []
    for blob in blobs:
        try:
            if b"-----BEGIN" in blob:
                out.extend(c.public_bytes(Encoding.DER) for c in load_pem_certificates(blob))
            else:
                out.append(load_der_certificate(blob).public_bytes(Encoding.DER))
        except MalformedError:
            continue
    return out


def _pinned_root(pool: Sequence[bytes], roots: Mapping[str, str]) -> tuple[bytes, str] | None:
    """The pinned certificate in ``pool`` that issued another certificate of the pool."""
    pinned = [(der, hashlib.sha256(der).hexdigest()) for der in dict.fromkeys(pool)]
    pinned = [(der, fp) for der, fp in pinned if fp in roots]
    if len(pinned) <= 1:
        return pinned[0] if pinned else None
    issuers = set()
    for der in pool:
        cert = load_der_certificate(der)
        if cert.issuer != cert.subject:
            issuers.add(cert.issuer.rfc4514_string())
    for der, fp in pinned:
        if load_der_certificate(der).subject.rfc4514_string() in issuers:
            return der, fp
    return pinned[0]


def _common_name(der: bytes) -> str:
    cert = load_der_certificate(der)
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _vendor_roots(kind: str) -> Mapping[str, str]:
    # Looked up at call time, so tests can pin a test CA (never the evidence).
    if kind == "sev-snp":
        return sev_snp.AMD_ARK_FINGERPRINTS
    if kind == "tdx":
        return tdx.INTEL_ROOT_FINGERPRINTS
    return nitro.AWS_NITRO_ROOT_FINGERPRINTS


def appraise_deployment(
    deployment: Deployment,
    *,
    now: datetime,
    tpm_roots: Sequence[bytes] = (),
    policy_document: PolicyDocument | None = None,
    collateral: TdxCollateral | None = None,
) -> tuple[Appraisal, VendorRoot | None]:
    """Appraise a deployment's evidence (crypto, chain, debug, binding), without the firmware match.

    Args:
        deployment: the decoded predicate.
        now: the submission time (timezone-aware).
        tpm_roots: DER certificates of the TPM CAs the trust folder holds (TPM evidence only).
        policy_document: the appraisal policy of the deployment's environment (default: the
            built-in policy). The deployment binding is demanded whatever it says.
        collateral: Intel TDX collateral (TCB Info, QE Identity) for the TCB status.

    Returns:
        The appraisal and the vendor root its chain ended at (None when it verified to none).

    Raises:
        MalformedError: the evidence or an endorsement does not parse.
    """
    kind = deployment.evidence_type
    document = policy_document or default_document(deployment.environment)
    policy = replace(
        document.policy_for(kind, expected_report_data=expected_report_data(kind, deployment.binding)),
        tpm_roots=frozenset(hashlib.sha256(der).hexdigest() for der in tpm_roots),
    )
    endorsements = list(deployment.endorsements)
    if kind == "tpm":
        # the roots' certificates must be in the pool the chain is built from
        appraisal = tpm.appraise_tpm(
            deployment.evidence, endorsements=[*endorsements, *tpm_roots], now=now, policy=policy
        )
        evidence = tpm.parse_evidence(deployment.evidence)
        pool = [*([evidence.ak_certificate] if evidence.ak_certificate else []), *evidence.intermediates,
                *_certificates(endorsements), *tpm_roots]
        roots = {hashlib.sha256(der).hexdigest(): "configured TPM root" for der in tpm_roots}
        chain_check = "ak_chain"
    elif kind == "sev-snp":
        roots = _vendor_roots(kind)
        appraisal = sev_snp.appraise_sev_snp(
            deployment.evidence, endorsements=endorsements, now=now, policy=policy, roots=roots
        )
        pool = _certificates(endorsements)
        chain_check = "vcek_chain"
    elif kind == "tdx":
        roots = _vendor_roots(kind)
        appraisal = tdx.appraise_tdx(
            deployment.evidence, endorsements=endorsements, now=now, policy=policy, roots=roots, collateral=collateral
        )
        quote = tdx.parse_quote(deployment.evidence)
        pool = [*_certificates([quote.pck_chain_pem]), *_certificates(endorsements)]
        chain_check = "pck_chain"
    elif kind == "nitro":
        roots = _vendor_roots(kind)
        appraisal = nitro.appraise_nitro(deployment.evidence, endorsements=endorsements, now=now, policy=policy, roots=roots)
        pool = list(nitro.parse_document(deployment.evidence).cabundle)
        chain_check = "cert_chain"
    else:  # the schema allows no other type
        raise MalformedError(f"unknown evidence type {kind!r}")
    root = None
    try:
        verified = appraisal.check(chain_check).ok
    except KeyError:
        verified = False
    found = _pinned_root(pool, roots) if verified else None
    if found is not None:
        der, fp = found
        cn = _common_name(der)
        if kind == "tpm":
            name = f"{cn} (TPM root from the trust folder)"
        elif kind == "sev-snp":
            name = f"{_VENDORS[kind]} {roots[fp]} ({cn})"
        else:
            name = roots[fp]
        root = VendorRoot(name, fp)
    return appraisal, root


# ------------------------------------------------------------------------------ measurement match


def firmware_measurements(predicate: Any) -> dict[str, Any]:
    """The ``measurements`` of a firmware-image predicate (empty when it has none)."""
    if isinstance(predicate, Mapping) and isinstance(predicate.get("measurements"), Mapping):
        return dict(predicate["measurements"])
    return {}


def _equal(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a.lower(), b.lower())


def measurement_matches(kind: str, wanted: Any, claims: Mapping[str, Any]) -> bool:
    """Whether a firmware record's measurement for ``kind`` equals what the evidence claims."""
    if kind == "sev-snp":
        return _equal(wanted, claims.get("measurement"))
    if not isinstance(wanted, Mapping):
        return False
    if kind == "tdx":
        registers = {"mrtd": claims.get("mrtd")} | {f"rtmr{i}": claims.get(f"rtmr{i}") for i in range(4)}
        return all(_equal(value, registers.get(name)) for name, value in wanted.items())
    if kind == "tpm":
        bank, pcrs = wanted.get("bank"), wanted.get("pcrs")
        if not isinstance(pcrs, Mapping) or not pcrs:
            return False
        if not all(isinstance(index, str) and index.isdigit() for index in pcrs):
            return False  # the schema allows PCR indexes 0-23 only
        return all(_equal(value, claims.get(f"{bank}.pcr{int(index)}")) for index, value in pcrs.items())
    if kind == "nitro":
        return all(_equal(wanted.get(f"pcr{i}"), claims.get(f"pcr{i}")) for i in range(3))
    return False


def measurement_summary(kind: str, claims: Mapping[str, Any]) -> str:
    """The evidence's launch measurement in words, for reasons."""
    if kind == "tpm":
        pcrs = sorted((k for k in claims if "." in k and ".pcr" in k), key=lambda k: (k.split(".")[0], int(k.split("pcr")[1])))
        return "PCRs " + (", ".join(f"{k}={str(claims[k])[:16]}…" for k in pcrs) or "none")
    if kind == "nitro":
        return ", ".join(f"pcr{i} {str(claims.get(f'pcr{i}', ''))[:16]}…" for i in range(3))
    label = "MRTD" if kind == "tdx" else "MEASUREMENT"
    return f"{label} {claims.get('measurement', '')}"


def match_firmware(
    kind: str, claims: Mapping[str, Any], candidates: Sequence[FirmwareCandidate]
) -> tuple[bool, str, FirmwareCandidate | None]:
    """Find the firmware record the evidence's measurement matches (the latest trusted one).

    Returns:
        (ok, reason, the matched record or None).
    """
    matched = [c for c in candidates if kind in c.measurements and measurement_matches(kind, c.measurements[kind], claims)]
    trusted = [c for c in matched if c.untrusted_because is None]
    if trusted:
        best = max(trusted, key=lambda c: c.index)
        return True, f"{measurement_summary(kind, claims)} matches firmware-image entry {best.index} ({best.name})", best
    if matched:
        worst = max(matched, key=lambda c: c.index)
        return (
            False,
            f"{measurement_summary(kind, claims)} matches firmware-image entry {worst.index} ({worst.name}), "
            f"but that record is not trusted: {worst.untrusted_because}",
            None,
        )
    return False, f"no firmware-image record in the ledger has the {kind} {measurement_summary(kind, claims)}", None


# ------------------------------------------------------------------------------ the stored document


def failed_checks(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in document.get("checks", ()) if not c.get("ok")]


def appraisal_document(
    deployment: Deployment,
    appraisal: Appraisal,
    root: VendorRoot | None,
    *,
    appraised_at: int,
    firmware: FirmwareCandidate | None,
    policy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored, EAR-like result: ``verdict``, every ``check`` (``{"name","ok","reason"}``),
    ``claims``, and what the deployment was appraised as."""
    doc = appraisal.to_json()
    return {
        "verdict": doc["verdict"],
        "evidence_type": deployment.evidence_type,
        "artifact": f"sha256:{deployment.artifact}",
        "host_id": deployment.host_id,
        "environment": deployment.environment,
        "nonce": deployment.nonce,
        "binding": deployment.binding.hex(),
        "appraised_at": appraised_at,
        "root": None if root is None else {"name": root.name, "fingerprint": root.fingerprint},
        "firmware_entry": None if firmware is None else firmware.index,
        "checks": doc["checks"],
        "claims": doc["claims"],
        **({"policy": dict(policy)} if policy is not None else {}),
    }


def refusal_message(document: Mapping[str, Any]) -> str:
    """``deployment refused: <check>: <reason>; …`` for every failed check."""
    failed = failed_checks(document)
    return "deployment refused: " + "; ".join(f"{c['name']}: {c['reason']}" for c in failed)


# ------------------------------------------------------------------------------ judging under a trust state


def policy_info(document: PolicyDocument, index: int | None, tee: Any) -> dict[str, Any]:
    """What an appraisal records about the policy it ran under (so a verdict names its inputs);
    ``tee``: the trust state's TEE part (``ledger.trust.tee_events.TeeState``)."""
    return {
        "environment": document.environment,
        "index": index,
        "sha256": hashlib.sha256(document.canonical()).hexdigest(),
        "tee_index": tee.last_index,
    }


def tpm_roots_in(state: Any, *, revoked: bool = False) -> tuple[bytes, ...]:
    """The TPM roots of a trust state: its ``tee-root:tpm`` keys not revoked (what new evidence
    may chain to), or with ``revoked`` every one it registered (what a re-judging pins, so that
    its document names the root and the chain's verdict applies the revocation's time rule:
    evidence integrated before ``compromised_since`` stays trusted)."""
    return tuple(
        k.public_key for k in state.keys.values() if k.algorithm == "tee-root:tpm" and (revoked or k.revoked_index is None)
    )


def judge_deployment(
    deployment: Deployment,
    state: Any,
    *,
    integrated_time: int,
    candidates: Callable[[str, Mapping[str, Any]], Sequence[FirmwareCandidate]],
    rejudging: bool = False,
) -> tuple[dict[str, Any], FirmwareCandidate | None]:
    """A deployment's appraisal document under a trust state (``ledger.trust.policy.TrustState``):
    its evidence appraised at its integrated time under the state's policy for its environment,
    TDX collateral and TPM roots, then matched to a firmware record. ``candidates(kind, claims)``
    gives the firmware records before the deployment, each judged under ``state``. ``rejudging``:
    a later state's judgement, which pins revoked TPM roots too (``tpm_roots_in``).

    The submission's appraisal is this under the state before the deployment; a re-judging
    (``ledger.services.reappraisal``) is this under a later state; the offline verifier runs
    both from a bundle's leaves. Returns the document and the matched firmware record.

    Raises:
        MalformedError: the evidence or an endorsement does not parse.
    """
    policy_document, policy_index = state.tee.policy_document(deployment.environment)
    kind = deployment.evidence_type
    appraisal, root = appraise_deployment(
        deployment, now=datetime.fromtimestamp(integrated_time, UTC),
        tpm_roots=tpm_roots_in(state, revoked=rejudging) if kind == "tpm" else (),
        policy_document=policy_document,
        collateral=state.tee.tdx_collateral() if kind == "tdx" else None,
    )
    ok, reason, firmware = match_firmware(kind, appraisal.claims, candidates(kind, appraisal.claims))
    appraisal.add(FIRMWARE_CHECK, ok, reason)
    document = appraisal_document(
        deployment, appraisal, root, appraised_at=integrated_time, firmware=firmware,
        policy=policy_info(policy_document, policy_index, state.tee),
    )
    return document, firmware


def unappraisable_document(reason: str) -> dict[str, Any]:
    """The document of evidence that once passed but no longer parses under this code: refused,
    saying why."""
    return {"verdict": "reject", "checks": [{"name": "evidence_parses", "ok": False, "reason": reason}]}

