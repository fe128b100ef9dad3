"""Offline verification of Sigstore bundles against configured trusted roots.

:func:`verify_bundle` runs every check itself, on ``cryptography`` (plus ``rfc3161-client`` for
timestamps), so that all bundle kinds get the same steps and the same errors. Where
sigstore-python's ``Verifier`` covers the bundle (keyless ``hashedrekord`` and ``dsse/0.0.1``
entries, Rekor v1 and v2) it is run as well and must agree; it does not cover public-key
bundles, ``intoto/0.0.2`` or ``dsse/0.0.2`` entries, or proof-less v0.1 bundles, which rest on our
checks alone.

No step touches the network or the clock: time is the explicit ``now``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from rfc3161_client import VerificationError as Rfc3161VerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from ledger.tlog.checkpoint import Checkpoint
from ledger.records.dsse import Envelope
from ledger.errors import LedgerError, MalformedError, SignatureError, VerificationError
from ledger.records.keys import PublicKey
from ledger.interop.rekor import RekorInclusionProof, RekorV1Entry, verify_inclusion_path, verify_rekor_entry
import ledger.interop.sigstore._entry_body as _entry_body
import ledger.interop.sigstore._sigstore_python as _sigstore_python
from ledger.interop.sigstore._x509 import (
    CertificateIdentity,
    certificate_identity,
    check_bundle_chain,
    check_code_signing,
    verify_chain,
    verify_sct,
)
from ledger.interop.sigstore.bundle import Bundle, InclusionProof, TlogEntry
from ledger.interop.sigstore.trust import TrustedRoot, TrustedRoots
from ledger.records.statement import parse_statement

__all__ = ["VerifiedBundle", "VerifiedEntry", "VerifiedTime", "verify_bundle"]


@dataclass(frozen=True)
class VerifiedTime:
    """A time the signature is known to have existed by: ``tlog`` (SET) or ``rfc3161``."""

    source: str
    time: datetime


@dataclass(frozen=True)
class VerifiedEntry:
    """A transparency-log entry that verified: where it is and what vouches for it."""

    log_index: int
    log_id: bytes
    log_url: str
    kind: str
    #: None for Rekor v2 (no integrated time)
    integrated_time: datetime | None
    #: the signed checkpoint the inclusion proof reaches (None for a proof-less v0.1 bundle)
    checkpoint: Checkpoint | None
    has_inclusion_promise: bool
    #: ``proven`` (inclusion proof under a signed checkpoint, the SET checked too where present)
    #: or ``promised`` (a v0.1 bundle's SET alone)
    inclusion: str = "proven"


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every check passed, and what it establishes."""

    bundle: Bundle
    #: the trusted root (its file) the bundle verified against
    trusted_root: str
    #: the DSSE envelope (payload, payload_type), or None for a message signature
    envelope: Envelope | None
    #: (algorithm, digest) of the signed artifact, for a message signature
    message_digest: tuple[str, bytes] | None
    #: the keyless signer; None for a public-key bundle
    identity: CertificateIdentity | None
    signing_certificate: x509.Certificate | None
    #: the managed key that signed a public-key bundle
    public_key: PublicKey | None
    entries: tuple[VerifiedEntry, ...]
    times: tuple[VerifiedTime, ...]

    @property
    def integrated_time(self) -> datetime | None:
        """The first entry's integrated time (Rekor v1); None for Rekor v2."""
        return self.entries[0].integrated_time

    @property
    def log_index(self) -> int:
        return self.entries[0].log_index

    @property
    def log_id(self) -> bytes:
        return self.entries[0].log_id

    @property
    def inclusion(self) -> str:
        """``promised`` when some entry's inclusion rests on its SET alone, else ``proven``."""
        return "promised" if any(e.inclusion == "promised" for e in self.entries) else "proven"

    @property
    def signed_at(self) -> datetime:
        """The earliest verified time."""
        return min(t.time for t in self.times)


# --------------------------------------------------------------------------------------------
# Helpers


def _utc(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:  # beyond the years datetime can hold
        raise VerificationError(f"the time {seconds} is not a date (Unix seconds within the years 1 to 9999)") from exc


def _rekor_proof(proof: InclusionProof) -> RekorInclusionProof:
    return RekorInclusionProof(
        tree_index=proof.log_index,
        tree_size=proof.tree_size,
        root_hash=proof.root_hash,
        hashes=proof.hashes,
        checkpoint=None if proof.checkpoint is None else proof.checkpoint.encode("utf-8"),
    )


def _as_rekor_entry(entry: TlogEntry, proof: InclusionProof | None) -> RekorV1Entry:
    """A bundle's tlog entry as :mod:`ledger.interop.rekor` verifies it, with ``proof`` (the
    entry's inclusion proof, or None where it cannot prove inclusion and is left out)."""
    return RekorV1Entry(
        body=entry.canonicalized_body,
        integrated_time=entry.integrated_time,
        log_id=entry.log_id,
        log_index=entry.log_index,
        proof=None if proof is None else _rekor_proof(proof),
        signed_entry_timestamp=entry.signed_entry_timestamp,
    )


def _verify_rfc3161(token: bytes, signature: bytes, root: TrustedRoot, index: int) -> datetime:
    """The generation time of a timestamp a TSA of ``root`` issued over ``signature``."""
    try:
        response = decode_timestamp_response(token)
    except (ValueError, Rfc3161VerificationError) as exc:
        raise MalformedError(f"RFC 3161 timestamp {index} does not parse") from exc
    reasons = []
    for tsa in root.timestamp_authorities:
        certs = tsa.certificates
        if len(certs) < 2:  # noqa: PLR2004 - a signing certificate and a root at least
            reasons.append(f"{tsa.uri or 'TSA'}: chain is incomplete")
            continue
        builder = VerifierBuilder().tsa_certificate(certs[0]).add_root_certificate(certs[-1])
        for intermediate in certs[1:-1]:
            builder = builder.add_intermediate_certificate(intermediate)
        try:
            builder.build().verify_message(response, signature)
        except (Rfc3161VerificationError, ValueError) as exc:
            reasons.append(f"{tsa.uri or 'TSA'}: {exc}")
            continue
        when = response.tst_info.gen_time
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if not tsa.valid_for.contains(when):
            reasons.append(f"{tsa.uri or 'TSA'} is not valid at {when.isoformat()}")
            continue
        return when
    detail = "; ".join(reasons) or "the trusted root has no timestamp authority"
    raise VerificationError(f"RFC 3161 timestamp {index} does not verify ({detail})")


def _load_key(der: bytes) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("signing key is not a supported public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise VerificationError(f"signing key type {type(key).__name__} is not supported")
    return key


def _ec_hash(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())


def _verify_content(
    key_der: bytes, bundle: Bundle, artifact: bytes | None, digest: bytes | None
) -> None:
    """The DSSE signature over PAE, or the message signature over the artifact digest."""
    key = _load_key(key_der)
    signature = bundle.signature
    try:
        if bundle.envelope is not None:
            message = bundle.envelope.pae()
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(_ec_hash(key)))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            else:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            return
        assert digest is not None
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            # Ed25519 signs the message itself, never a digest: the artifact is needed.
            if artifact is None:
                raise VerificationError("an Ed25519 message signature can only be checked against the artifact")
            key.verify(signature, artifact)
        else:
            key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:
        what = "DSSE envelope signature" if bundle.envelope is not None else "message signature"
        raise SignatureError(f"{what} does not verify with the signer's key") from exc


def _signed_digest(bundle: Bundle, artifact: bytes | None) -> bytes | None:
    """The SHA-256 digest a message signature covers, checked against the artifact if given."""
    message = bundle.message_signature
    if message is None:
        return None
    if message.digest_algorithm not in (None, "SHA2_256"):
        raise VerificationError(f"message digest algorithm {message.digest_algorithm} is not supported (SHA2_256 only)")
    if artifact is not None:
        digest = hashlib.sha256(artifact).digest()
        if message.digest is not None and message.digest != digest:
            raise VerificationError("the artifact's SHA-256 digest is not the digest the bundle signs")
        return digest
    if message.digest is None:
        raise VerificationError("the bundle does not state the signed digest; the artifact is needed")
    return message.digest


def _check_artifact_in_statement(envelope: Envelope, artifact: bytes) -> None:
    """For a DSSE bundle, the artifact must be one of the in-toto statement's subjects."""
    try:
        statement = parse_statement(envelope.payload)
    except MalformedError as exc:
        raise VerificationError(f"DSSE payload is not an in-toto statement, so it names no artifact: {exc}") from exc
    wanted = hashlib.sha256(artifact).hexdigest()
    if not any(("sha256", wanted) in subject.digests() for subject in statement.subjects):
        raise VerificationError("the artifact's SHA-256 digest is not a subject of the statement")


# --------------------------------------------------------------------------------------------
# The verifier


def _verify_with_root(
    bundle: Bundle,
    root: TrustedRoot,
    *,
    artifact: bytes | None,
    public_key: PublicKey | None,
    now: datetime,
) -> VerifiedBundle:
    # (0) What signs, and what it signs: a Fulcio certificate or a managed key we were given;
    #     the artifact digest (message signature) or the envelope (DSSE).
    cert = bundle.signing_certificate
    if cert is not None:
        if public_key is not None:
            raise VerificationError("the bundle is signed with a certificate, not the given public key")
        key_der = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        if public_key is None:
            raise VerificationError("the bundle is signed with a managed key; its public key must be given")
        key_der = public_key.spki_der
    signer = _entry_body.SignerMaterial(certificate=cert, public_key_der=None if cert else key_der)
    digest = _signed_digest(bundle, artifact)

    # (1) Each transparency-log entry: its log is in this root, the leaf is in the tree of a
    #     checkpoint the log signed (Rekor v1: ECDSA note, v2: Ed25519 note), and the inclusion
    #     promise (SET), where present, is the log's signature over the entry. A v0.1 bundle may
    #     carry the SET alone; from v0.2 on the inclusion proof, with its checkpoint, is required.
    #     A v0.1 proof without a checkpoint (older clients wrote them) cannot prove inclusion, no
    #     log having signed its root: its path must still lead to its stated root (a wrong proof
    #     is refused), and the SET must vouch (inclusion promised).
    times: list[VerifiedTime] = []
    entries: list[VerifiedEntry] = []
    for i, entry in enumerate(bundle.tlog_entries):
        log = root.tlog(entry.log_id)
        if log is None:
            raise VerificationError(f"tlog entry {i} is from log {entry.log_id.hex()}, not a log of the trusted root")
        proof = entry.inclusion_proof
        if proof is None and bundle.version != "0.1":
            raise VerificationError(f"tlog entry {i} has no inclusion proof (required from bundle v0.2 on)")
        if proof is not None and proof.checkpoint is None:
            if bundle.version != "0.1":
                raise VerificationError(f"tlog entry {i}'s inclusion proof has no checkpoint (required from bundle v0.2 on)")
            try:
                verify_inclusion_path(entry.canonicalized_body, _rekor_proof(proof))
            except VerificationError as exc:
                raise VerificationError(f"tlog entry {i} (log {log.base_url}): {exc}") from exc
            proof = None
        if proof is None and entry.signed_entry_timestamp is None:
            aside = " (its inclusion proof has no checkpoint, so it proves nothing)" if entry.inclusion_proof else ""
            raise VerificationError(f"tlog entry {i} has neither an inclusion proof nor an inclusion promise{aside}")
        try:
            checked = verify_rekor_entry(_as_rekor_entry(entry, proof), log.public_key_der, log_name=log.host)
        except SignatureError as exc:
            raise SignatureError(f"tlog entry {i} (log {log.base_url}): {exc}") from exc
        except (VerificationError, MalformedError) as exc:
            raise VerificationError(f"tlog entry {i} (log {log.base_url}): {exc}") from exc
        checkpoint = checked.checkpoint
        integrated = None
        if checked.set_verified:
            # Only the SET binds the integrated time; a bare integratedTime proves nothing.
            if entry.integrated_time:
                integrated = _utc(entry.integrated_time)
                if not log.valid_for.contains(integrated):
                    raise VerificationError(f"log {log.base_url} key was not valid at {integrated.isoformat()}")
                times.append(VerifiedTime("tlog", integrated))
        elif proof is not None and entry.log_index != proof.log_index:
            # Without a SET only the proof vouches for the index (Rekor v2: the two are equal).
            raise VerificationError(
                f"tlog entry {i} log index {entry.log_index} is not its inclusion proof's "
                f"{proof.log_index}, and no inclusion promise vouches for it"
            )
        # (2) The logged body is this bundle's signature, by this signer, over this content.
        _entry_body.check_entry_body(entry, bundle, signer, digest)
        entries.append(
            VerifiedEntry(
                log_index=entry.log_index,
                log_id=entry.log_id,
                log_url=log.base_url,
                kind=entry.kind_version,
                integrated_time=integrated,
                checkpoint=checkpoint,
                has_inclusion_promise=entry.signed_entry_timestamp is not None,
                inclusion=checked.inclusion,
            )
        )

    # (3) RFC 3161 timestamps over the signature, each from a TSA of the root valid at its time.
    #     Fail closed: a timestamp that does not verify refuses the bundle.
    if len(set(bundle.rfc3161_timestamps)) != len(bundle.rfc3161_timestamps):
        raise VerificationError("the bundle repeats an RFC 3161 timestamp")
    for i, token in enumerate(bundle.rfc3161_timestamps):
        times.append(VerifiedTime("rfc3161", _verify_rfc3161(token, bundle.signature, root, i)))

    # (4) At least one verified time, and none after ``now``. A Rekor v2 entry has no time of
    #     its own, so its log key must have been valid at the timestamps.
    if not times:
        raise VerificationError("no verified time: the bundle needs an inclusion promise or an RFC 3161 timestamp")
    for t in times:
        if t.time > now:
            raise VerificationError(f"verified time {t.time.isoformat()} ({t.source}) is after now")
    for entry_info, entry in zip(entries, bundle.tlog_entries, strict=True):
        if entry_info.integrated_time is None:
            log = root.tlog(entry.log_id)
            assert log is not None
            if not all(log.valid_for.contains(t.time) for t in times):
                raise VerificationError(f"log {log.base_url} key was not valid at the signature's verified times")

    # (5) Keyless: the certificate chains to a Fulcio CA of the root, and it and the chain are
    #     valid, at every verified time (this is what refuses a signature made with an expired
    #     or not-yet-valid certificate even when every signature checks out).
    identity = None
    if cert is not None:
        chain: list[x509.Certificate] = []
        for t in times:
            chain = verify_chain(cert, root, t.time)
        # (6) The certificate was logged in a CT log of the root (embedded SCT).
        if root.ctlogs:
            verify_sct(cert, chain[0], root)
        # (7) The Sigstore X.509 profile, and the signer identity it carries.
        check_code_signing(cert)
        identity = certificate_identity(cert)

    # (8) The content signature: DSSE over PAE(payloadType, payload), or the message
    #     signature over the artifact digest, by the certificate's or the managed key.
    _verify_content(key_der, bundle, artifact, digest)

    # (9) For a DSSE bundle checked against an artifact, the artifact is a statement subject.
    if artifact is not None and bundle.envelope is not None:
        _check_artifact_in_statement(bundle.envelope, artifact)

    # (10) sigstore-python's own Verifier, where it covers the bundle, must agree.
    if _sigstore_python.covers(bundle):
        _sigstore_python.verify_with_sigstore_python(bundle, root.document, digest)

    message_digest = ("SHA2_256", digest) if digest is not None else None
    return VerifiedBundle(
        bundle=bundle,
        trusted_root=root.source,
        envelope=bundle.envelope,
        message_digest=message_digest,
        identity=identity,
        signing_certificate=cert,
        public_key=public_key,
        entries=tuple(entries),
        times=tuple(times),
    )


def verify_bundle(
    bundle: Bundle,
    roots: TrustedRoots | Sequence[TrustedRoot],
    *,
    artifact: bytes | None = None,
    public_key: PublicKey | None = None,
    now: datetime,
) -> VerifiedBundle:
    """Verify a parsed bundle offline.

    Args:
        bundle: from :func:`ledger.interop.sigstore.bundle.parse_bundle`.
        roots: the trusted roots; the bundle is checked against each root that knows its
            logs, one at a time, and the first that accepts it wins.
        artifact: the signed artifact's bytes, when at hand. A message signature is then
            checked against its digest, and a DSSE statement must name it as a subject.
            Without it, a message signature is checked against the digest the bundle states.
        public_key: the managed key of a public-key bundle (required for those, refused for
            certificate bundles).
        now: the current time; verified times after it are refused.

    Returns:
        What the bundle establishes: signer identity or key, envelope or digest, log entries
        and verified times. Identity *policy* is separate: see :mod:`ledger.interop.sigstore.identity`.

    Raises:
        VerificationError: any check fails (SignatureError for a bad signature).
        MalformedError: a nested structure (an RFC 3161 token) does not parse.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    check_bundle_chain(bundle.certificates)
    # Transparency is required: a bundle with only RFC 3161 timestamps (GitHub private
    # repositories) is refused.
    if not bundle.tlog_entries:
        raise VerificationError("the bundle has no transparency log entry")
    log_ids = {entry.log_id for entry in bundle.tlog_entries}
    candidates = [root for root in roots if all(root.tlog(log_id) for log_id in log_ids)]
    if not candidates:
        unknown = ", ".join(sorted(log_id.hex() for log_id in log_ids))
        raise VerificationError(f"no trusted root knows the bundle's transparency log ({unknown})")
    first_error: LedgerError | None = None
    for root in candidates:
        try:
            return _verify_with_root(bundle, root, artifact=artifact, public_key=public_key, now=now)
        except (VerificationError, MalformedError) as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error
