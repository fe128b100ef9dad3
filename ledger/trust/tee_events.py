"""TEE key events: appraisal policies and Intel TDX collateral, recorded by the administrator.

Two actions of ``key-event/v1`` (signed by the root of trust like every key event), so that a
deployment's appraisal is a function of the log:

* ``tee-policy``: ``appraisal_policy`` is a policy document (``ledger.attestation.policy_document``,
  parsed strictly); it replaces the policy of the environment it names. Subject
  ``tee-policy:<environment>``, digest the SHA-256 of the document's RFC 8785 bytes.
* ``tdx-collateral``: ``collateral`` holds the files as they came (base64): ``tcb_infos``,
  ``qe_identities``, ``certificates`` (the TCB Signing chain), ``crls``. Each replaces its
  predecessor of the same identity (a TCB Info per FMSPC, a QE Identity per id, a CRL per
  issuer). Subject ``tdx-collateral``, digest the SHA-256 of the ``collateral`` object's RFC 8785
  bytes. Signatures and dates are judged at appraisal time, never here.

:class:`TeeState` is the part of the trust state these events build.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.serialization import Encoding

from ledger.attestation.policy_document import (
    DEFAULT_ENVIRONMENT,
    PolicyDocument,
    default_document,
    parse_policy_document,
)
from ledger.attestation.tdx_tcb import TdxCollateral, parse_signed_json
from ledger.errors import MalformedError
from ledger.untrusted.x509 import load_crl, load_der_certificate, load_pem_certificates

__all__ = [
    "COLLATERAL_FIELDS",
    "TEE_ACTIONS",
    "TeeState",
    "collateral_predicate",
    "parse_collateral",
    "parse_policy",
    "tee_event_subject",
]

TEE_ACTIONS = ("tee-policy", "tdx-collateral")
COLLATERAL_FIELDS = ("tcb_infos", "qe_identities", "certificates", "crls")


def parse_policy(predicate: Mapping[str, Any]) -> PolicyDocument | None:
    doc = predicate.get("appraisal_policy")
    if doc is None:
        return None
    try:
        return parse_policy_document(doc)
    except MalformedError as exc:
        raise MalformedError(f"predicate.appraisal_policy: {exc}") from exc


def parse_collateral(predicate: Mapping[str, Any]) -> dict[str, tuple[bytes, ...]] | None:
    """The decoded files of a ``collateral`` object; each must be what its field says."""
    doc = predicate.get("collateral")
    if doc is None:
        return None
    out: dict[str, tuple[bytes, ...]] = {}
    for name in COLLATERAL_FIELDS:
        blobs = []
        for n, text in enumerate(doc.get(name, ())):
            try:
                blobs.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise MalformedError(f"predicate.collateral.{name}[{n}] is not base64") from exc
        out[name] = tuple(blobs)
    try:
        parsed = TdxCollateral.from_files([b for name in COLLATERAL_FIELDS for b in out[name]])
    except MalformedError as exc:
        raise MalformedError(f"predicate.collateral: {exc}") from exc
    # each file must sit in the field that names it (so a reader need not guess)
    if set(parsed.tcb_infos) != set(out["tcb_infos"]) or set(parsed.qe_identities) != set(out["qe_identities"]):
        raise MalformedError("predicate.collateral: tcb_infos must hold TCB Info and qe_identities QE Identity documents")
    ders = [_der_certs(b) for b in out["certificates"]]
    if any(not d for d in ders) or set(parsed.crls) != set(_der_crls(out["crls"])):
        raise MalformedError("predicate.collateral: certificates must hold certificates and crls CRLs")
    return out


def _der_certs(blob: bytes) -> list[bytes]:
    try:
        if b"-----BEGIN" in blob:
            return [c.public_bytes(Encoding.DER) for c in load_pem_certificates(blob)]
        return [load_der_certificate(blob).public_bytes(Encoding.DER)]
    except MalformedError:
        return []


def _der_crls(blobs: tuple[bytes, ...]) -> list[bytes]:
    out = []
    for blob in blobs:
        try:
            out.append(load_crl(blob).public_bytes(Encoding.DER))
        except MalformedError:
            continue
    return out


def collateral_predicate(collateral: Mapping[str, tuple[bytes, ...]]) -> dict[str, list[str]]:
    return {name: [base64.b64encode(b).decode("ascii") for b in collateral[name]] for name in COLLATERAL_FIELDS if collateral.get(name)}


def tee_event_subject(action: str, policy: PolicyDocument | None, collateral: Mapping[str, tuple[bytes, ...]] | None) -> dict[str, Any]:
    if action == "tee-policy":
        assert policy is not None
        return {"name": f"tee-policy:{policy.environment}", "digest": {"sha256": hashlib.sha256(policy.canonical()).hexdigest()}}
    assert collateral is not None
    digest = hashlib.sha256(rfc8785.dumps(collateral_predicate(collateral))).hexdigest()
    return {"name": "tdx-collateral", "digest": {"sha256": digest}}


def _collateral_keys(collateral: Mapping[str, tuple[bytes, ...]]) -> list[tuple[str, str, bytes]]:
    """(identity, field, file) of each file: later files of the same identity replace earlier ones."""
    out = []
    for blob in collateral.get("tcb_infos", ()):
        body = parse_signed_json(blob).body
        out.append((f"tcb-info:{body.get('id')}:{str(body.get('fmspc', '')).lower()}", "tcb_infos", blob))
    for blob in collateral.get("qe_identities", ()):
        out.append((f"qe-identity:{parse_signed_json(blob).body.get('id')}", "qe_identities", blob))
    for blob in collateral.get("certificates", ()):
        out.append((f"certificate:{hashlib.sha256(blob).hexdigest()}", "certificates", blob))
    for blob in collateral.get("crls", ()):
        crls = _der_crls((blob,))
        issuer = load_crl(crls[0]).issuer.public_bytes() if crls else blob
        out.append((f"crl:{hashlib.sha256(issuer).hexdigest()}", "crls", blob))
    return out


@dataclass
class TeeState:
    """Policies by environment and the current TDX collateral, with the index that set each."""

    policies: dict[str, tuple[PolicyDocument, int]] = field(default_factory=dict)
    collateral: dict[str, tuple[str, bytes, int]] = field(default_factory=dict)
    #: the index of the last TEE event applied (-1: none): re-judging keys on it
    last_index: int = -1
    _parsed: TdxCollateral | None = field(default=None, repr=False, compare=False)

    def apply(self, action: str, policy: PolicyDocument | None, collateral: Mapping[str, tuple[bytes, ...]] | None, index: int) -> None:
        if action == "tee-policy" and policy is not None:
            self.policies[policy.environment] = (policy, index)
        elif action == "tdx-collateral" and collateral is not None:
            for key, name, blob in _collateral_keys(collateral):
                self.collateral[key] = (name, blob, index)
            self._parsed = None
        self.last_index = max(self.last_index, index)

    def copy(self) -> TeeState:
        return TeeState(dict(self.policies), dict(self.collateral), self.last_index, self._parsed)

    def policy_document(self, environment: str) -> tuple[PolicyDocument, int | None]:
        """The policy of ``environment`` (else of ``default``, else built in) and its event index."""
        for env in (environment, DEFAULT_ENVIRONMENT):
            if env in self.policies:
                return self.policies[env]
        return default_document(environment), None

    def tdx_collateral(self) -> TdxCollateral:
        """The current collateral (parsed once per state)."""
        if self._parsed is None:
            files = [blob for _, blob, _ in self.collateral.values()]
            self._parsed = TdxCollateral.from_files(files) if files else TdxCollateral()
        return self._parsed
