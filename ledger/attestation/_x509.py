"""Certificate parsing and chain verification to a pinned root, with cached signature checks.

A chain is built from a leaf and a pool of candidate certificates (from the evidence or the
endorsements) and must end at a certificate whose SHA-256 DER fingerprint is pinned by the caller:
evidence never chooses its own root. Signature checks between two certificates depend only on
their DER bytes, so their results are cached (an LRU keyed on the two DERs); validity periods
depend on ``now`` and are checked on every call.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from ledger.errors import MalformedError
from ledger.untrusted.x509 import load_crl, load_der_certificate, quiet

__all__ = [
    "MAX_CHAIN_DEPTH",
    "ChainResult",
    "clear_caches",
    "crl_issuer",
    "describe",
    "fingerprint",
    "load_der",
    "parse_endorsements",
    "verify_chain",
    "verify_crls",
]

#: the longest chain we walk (leaf + intermediates + root)
MAX_CHAIN_DEPTH = 6

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
#: the PEM blocks an endorsement may hold
_PEM_LABELS = (b"CERTIFICATE", b"X509 CRL")


@lru_cache(maxsize=1024)
def load_der(der: bytes) -> x509.Certificate:
    """Parse one DER certificate completely (``ledger.untrusted.x509``; cached by its bytes)."""
    return load_der_certificate(der)


@lru_cache(maxsize=1024)
def fingerprint(der: bytes) -> str:
    """Lowercase hex SHA-256 of a certificate's DER."""
    return hashlib.sha256(der).hexdigest()


@lru_cache(maxsize=1024)
def describe(der: bytes) -> str:
    """A short name for messages: the subject CN (or the whole subject) and a fingerprint prefix."""
    cert = load_der(der)
    with quiet():
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(cns[0].value) if cns else (cert.subject.rfc4514_string() or "(empty subject)")
    return f"{name!r} (sha256 {fingerprint(der)[:16]}…)"


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    import base64  # noqa: PLC0415 - only PEM input needs it

    # One pass, linear in the input: each BEGIN line's END is looked for once per label (a label
    # whose END is not found after some point is not found after any later point either).
    blocks = []
    unterminated: dict[bytes, int] = {}
    after = 0  # blocks do not overlap: a BEGIN inside the last block's body is part of it
    for match in _PEM_BEGIN.finditer(data):
        if match.start() < after:
            continue
        raw_label = match.group(1)
        if raw_label not in _PEM_LABELS:
            msg = f"unexpected PEM block {raw_label.decode()[:40]!r} in an endorsement"
            raise MalformedError(msg)
        if unterminated.get(raw_label, len(data) + 1) <= match.end():
            continue
        end_marker = b"-----END " + raw_label + b"-----"
        end = data.find(end_marker, match.end())
        if end < 0:
            unterminated[raw_label] = match.end()
            continue
        label = raw_label.decode()
        body = data[match.end() : end]
        after = end + len(end_marker)
        try:
            blocks.append((label, base64.b64decode(b"".join(body.split()), validate=True)))
        except ValueError as exc:
            msg = f"PEM {label} block is not valid base64"
            raise MalformedError(msg) from exc
    return blocks


@lru_cache(maxsize=256)
def _parse_blob(blob: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    certs: list[bytes] = []
    crls: list[bytes] = []
    if b"-----BEGIN" in blob:
        blocks = _pem_blocks(blob)
        if not blocks:
            msg = "PEM endorsement has no complete BEGIN/END block"
            raise MalformedError(msg)
        for label, der in blocks:
            if label == "CERTIFICATE":
                load_der(der)
                certs.append(der)
            elif label == "X509 CRL":
                _load_crl(der)
                crls.append(der)
            else:
                msg = f"unexpected PEM block {label!r} in an endorsement"
                raise MalformedError(msg)
        return tuple(certs), tuple(crls)
    try:
        load_der(blob)
    except MalformedError:
        try:
            _load_crl(blob)
        except MalformedError:
            msg = "endorsement is neither a certificate nor a CRL (PEM or DER)"
            raise MalformedError(msg) from None
        return (), (blob,)
    return (blob,), ()


def parse_endorsements(blobs: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split endorsement files (PEM with any number of blocks, or one DER) into cert and CRL DERs."""
    certs: list[bytes] = []
    crls: list[bytes] = []
    for blob in blobs:
        c, r = _parse_blob(bytes(blob))
        certs.extend(d for d in c if d not in certs)
        crls.extend(d for d in r if d not in crls)
    return certs, crls


def pem_certificates(data: bytes) -> list[bytes]:
    """The DER certificates of a PEM chain (anything else in it is malformed)."""
    data = bytes(data).rstrip(b"\x00")  # DCAP chains may carry a trailing NUL
    if b"-----BEGIN" not in data:
        msg = "the certificate chain is empty or not PEM"
        raise MalformedError(msg)
    certs, crls = _parse_blob(data)
    if crls:
        msg = "a certificate chain must not contain CRLs"
        raise MalformedError(msg)
    return list(certs)


@lru_cache(maxsize=64)
def _load_crl(der: bytes) -> x509.CertificateRevocationList:
    return load_crl(der, "the DER CRL")


@lru_cache(maxsize=4096)
def _issued_by(child_der: bytes, issuer_der: bytes) -> str | None:
    """None when ``issuer`` is a CA whose key signed ``child`` under its name, else why not."""
    child = load_der(child_der)
    issuer = load_der(issuer_der)
    try:
        with quiet():
            child.verify_directly_issued_by(issuer)
    except ValueError:
        return f"{describe(child_der)} is not issued under the name of {describe(issuer_der)}"
    except InvalidSignature:
        return f"the signature of {describe(issuer_der)} on {describe(child_der)} does not verify"
    except (TypeError, UnsupportedAlgorithm) as exc:
        return f"cannot verify {describe(child_der)}: {exc}"
    with quiet():
        try:
            constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return f"{describe(issuer_der)} has no basicConstraints, so it is not a CA"
    if not constraints.ca:
        return f"{describe(issuer_der)} is not a CA certificate"
    return None


@dataclass(frozen=True)
class ChainResult:
    """Outcome of :func:`verify_chain`: ``path`` is leaf first, pinned root last."""

    ok: bool
    reason: str
    path: tuple[bytes, ...] = ()
    root_name: str | None = None


def _find_path(
    leaf: bytes, pool: Sequence[bytes], roots: Mapping[str, str]
) -> tuple[list[bytes], str | None, str]:
    path = [leaf]
    current = leaf
    while len(path) < MAX_CHAIN_DEPTH:
        if len(path) > 1 and fingerprint(current) in roots:
            if (why := _issued_by(current, current)) is not None:
                return path, None, f"pinned root is not validly self-signed: {why}"
            return path, roots[fingerprint(current)], ""
        reasons = []
        issuer = None
        for candidate in pool:
            if candidate in path:
                continue
            why = _issued_by(current, candidate)
            if why is None:
                issuer = candidate
                break
            reasons.append(why)
        if issuer is None:
            if len(path) > 1 and _issued_by(current, current) is None:
                return (
                    path,
                    None,
                    f"the chain ends at {describe(current)}, which is not a pinned root",
                )
            detail = f" ({'; '.join(reasons)})" if reasons else ""
            return path, None, f"no issuer of {describe(current)} among the certificates{detail}"
        path.append(issuer)
        current = issuer
    return path, None, f"chain longer than {MAX_CHAIN_DEPTH} certificates"


def verify_chain(
    leaf: bytes, pool: Sequence[bytes], roots: Mapping[str, str], now: datetime
) -> ChainResult:
    """Build and verify a chain from ``leaf`` to a root pinned in ``roots``.

    Args:
        leaf: DER of the end-entity certificate.
        pool: DER certificates that may serve as intermediates and root.
        roots: pinned root fingerprints (hex SHA-256 of DER) → a name (e.g. the AMD product).
        now: the time every certificate in the chain must be valid at.

    Returns:
        A :class:`ChainResult`; failures are results, never exceptions.
    """
    path, root_name, why = _find_path(leaf, tuple(pool), roots)
    if root_name is None:
        return ChainResult(False, why, tuple(path))
    for der in path:
        cert = load_der(der)
        if now < cert.not_valid_before_utc:
            return ChainResult(
                False,
                f"{describe(der)} is not valid before {cert.not_valid_before_utc.isoformat()}",
                tuple(path),
            )
        if now > cert.not_valid_after_utc:
            return ChainResult(
                False,
                f"{describe(der)} expired at {cert.not_valid_after_utc.isoformat()}",
                tuple(path),
            )
    names = " → ".join(describe(d).split(" (")[0] for d in path)
    return ChainResult(
        True, f"{names}, valid at {now.isoformat()}, pinned root", tuple(path), root_name
    )


@lru_cache(maxsize=256)
def _crl_signed_by(crl_der: bytes, issuer_der: bytes) -> bool:
    """Whether the CRL's signature verifies with the issuer's key (cached: it depends on bytes only)."""
    with quiet():
        return bool(_load_crl(crl_der).is_signature_valid(load_der(issuer_der).public_key()))  # type: ignore[arg-type]


def verify_crls(path: Sequence[bytes], crls: Sequence[bytes], now: datetime) -> tuple[bool, str]:
    """Check the certificates of a verified ``path`` against the supplied CRLs.

    A CRL issued under the name of a certificate in the path must be signed by it and be current
    at ``now``; a certificate it lists is revoked. CRLs from other issuers are ignored.
    """
    used = 0
    for crl_der in crls:
        crl = _load_crl(crl_der)
        for index, issuer_der in enumerate(path):
            issuer = load_der(issuer_der)
            with quiet():
                if crl.issuer != issuer.subject:
                    continue
            if not _crl_signed_by(crl_der, issuer_der):
                return False, f"the CRL of {describe(issuer_der)} has a bad signature"
            if crl.last_update_utc > now or (
                crl.next_update_utc is not None and crl.next_update_utc < now
            ):
                return False, f"the CRL of {describe(issuer_der)} is not current at {now}"
            used += 1
            # Only certificates this CA issued (the ones below it in the path) are looked up.
            for child_der in path[:index]:
                child = load_der(child_der)
                with quiet():
                    if child.issuer != issuer.subject:
                        continue
                    revoked = crl.get_revoked_certificate_by_serial_number(child.serial_number)
                if revoked is not None:
                    return False, f"{describe(child_der)} is revoked by {describe(issuer_der)}"
    if used == 0:
        return False, "none of the supplied CRLs is issued by a CA in the chain"
    return True, f"no certificate in the chain is revoked ({used} CRL(s) checked)"


def crl_issuer(der: bytes) -> x509.Name:
    """The issuer name of a DER CRL."""
    with quiet():
        return _load_crl(der).issuer


def clear_caches() -> None:
    """Forget every parsed certificate and verified signature (for cold benchmarks and tests)."""
    for cached in (load_der, fingerprint, describe, _parse_blob, _load_crl, _issued_by, _crl_signed_by):
        cached.cache_clear()
    for cached in _OTHER_CACHES:
        cached.cache_clear()


#: caches of other attestation modules that hold bytes-only results (``register_cache``)
_OTHER_CACHES: list[Any] = []


def register_cache(cached: Any) -> Any:
    """Have :func:`clear_caches` clear ``cached`` too (an ``lru_cache`` function); returns it."""
    _OTHER_CACHES.append(cached)
    return cached
