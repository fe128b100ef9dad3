"""Sigstore bundles in: verify offline, judge the signer, prepare a ``sigstore-bundle`` leaf.

A submission that is a JSON object with a ``mediaType`` is a Sigstore bundle
(``ledger.services.append`` dispatches here). The steps, in the order of the API's status codes:

1. size (413: the same limit as a bare envelope) and shape (400: ``ledger.interop.sigstore.parse_bundle``);
2. the content: a DSSE envelope must carry an in-toto statement whose predicate passes the same
   validation as a bare envelope's (400); a message signature must state its SHA-256 digest,
   which becomes the entry's one subject (predicate type ``ARTIFACT_SIGNATURE``);
3. verification, offline, against the configured trusted roots
   (``PROVLEDGER_SIGSTORE_TRUSTED_ROOTS``, loaded once per process) with
   ``ledger.interop.sigstore.verify_bundle`` (422): certificate chain at the log's integrated time or an
   RFC 3161 time, Rekor inclusion proof / promise, and the content signature;
4. trust (403): a keyless bundle's certificate identity must match a registered identity (SAN
   glob, exact issuer, exact source repository when the identity pins one) whose grants cover
   the statement; a public-key bundle's key must be a registered key whose grants cover it.
   Grant windows and review-by dates are judged at ``now``, the ledger's integration time,
   exactly as for DSSE envelopes.

The leaf keeps the bundle whole (``ledger.records.leaf.encode_bundle_leaf``), so a receipt lets
anyone re-verify it with ``sigstore verify``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ledger.records.dsse import MAX_ENVELOPE_BYTES
from ledger.errors import MalformedError, NotTrustedError, SignatureError, TooLargeError
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.trust.graph import edges_of
from ledger.trust.judge import APPENDING, judge
from ledger.trust.keyless import identity_matches
from ledger.trust.predicates import KEY_EVENT, validate_predicate
from ledger.records.leaf import canonical_json
from ledger.interop.sigstore import Bundle, TrustedRoots, VerifiedBundle, load_trusted_roots, parse_bundle, verify_bundle
from ledger.interop.sigstore.trust import ENV_TRUSTED_ROOTS
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, parse_statement
from ledger.services.prepared import Prepared, Signer
from ledger.untrusted.json import parse_json

__all__ = ["ARTIFACT_SIGNATURE", "is_bundle", "prepare_bundle", "trusted_roots"]

#: The predicate type an entry of a message-signature bundle is indexed under: the signer signed
#: the artifact whose SHA-256 is the entry's subject, and said nothing more about it.
ARTIFACT_SIGNATURE = "https://provenance-ledger.dev/artifact-signature/v1"

#: (the configuration string, the roots it loaded): loaded once per process
_ROOTS: dict[str, TrustedRoots] = {}


def trusted_roots() -> TrustedRoots:
    """The configured Sigstore trusted roots (``PROVLEDGER_SIGSTORE_TRUSTED_ROOTS``), loaded once
    per process (per distinct setting). Raises ConfigurationError naming a bad file."""
    import os  # noqa: PLC0415 - read at call time, so a test can set it

    setting = os.environ.get(ENV_TRUSTED_ROOTS, "")
    if setting not in _ROOTS:
        _ROOTS[setting] = load_trusted_roots(setting)
    return _ROOTS[setting]


def is_bundle(raw: bytes | str | Mapping[str, Any]) -> bool:
    """Whether a submission is a JSON object with a ``mediaType`` (a Sigstore bundle).

    Cheap for envelopes: the JSON is only decoded when the key's spelling occurs at all (a DSSE
    envelope's payload is base64 and cannot contain it).
    """
    if isinstance(raw, Mapping):
        return "mediaType" in raw
    needle = b'"mediaType"' if isinstance(raw, bytes | bytearray) else '"mediaType"'
    if needle not in raw:  # type: ignore[operator]
        return False
    try:
        doc = parse_json(raw, what="submission")
    except MalformedError:
        return False
    return isinstance(doc, dict) and "mediaType" in doc


def _bytes_of(raw: bytes | str | Mapping[str, Any], limit: int) -> bytes:
    if isinstance(raw, Mapping):
        # An already decoded object (a batch item): measure it the way it would arrive alone.
        data = json.dumps(raw, separators=(",", ":")).encode("utf-8")
    elif isinstance(raw, str):
        data = raw.encode("utf-8", errors="surrogatepass")
    else:
        data = bytes(raw)
    if len(data) > limit:
        raise TooLargeError(f"bundle is {len(data)} bytes, over the limit of {limit} bytes")
    return data


# ------------------------------------------------------------------------------ the content


def _content(bundle: Bundle) -> tuple[str, tuple[tuple[str, str, str], ...], tuple[tuple[str, str, str], ...]]:
    """(predicate type, subjects, edges) of what the bundle signs; MalformedError if unusable."""
    if bundle.envelope is not None:
        envelope = bundle.envelope
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise MalformedError(
                f"bundle dsseEnvelope payloadType is {envelope.payload_type!r}; the ledger accepts {IN_TOTO_PAYLOAD_TYPE!r}"
            )
        statement = parse_statement(envelope.payload)
        if statement.predicate_type == KEY_EVENT:
            raise NotTrustedError("a key event must be a bare DSSE envelope signed by the administrator key, not a Sigstore bundle")
        statement.check_names()
        validate_predicate(statement.predicate_type, statement.predicate)
        subjects = tuple((alg, value, s.name) for s in statement.subjects for alg, value in s.digests())
        edges = edges_of(statement.predicate_type, statement.predicate, [(a, v) for a, v, _ in subjects])
        return statement.predicate_type, subjects, tuple(edges)
    message = bundle.message_signature
    assert message is not None
    if message.digest is None or message.digest_algorithm != "SHA2_256":
        raise MalformedError(
            "a message-signature bundle must state the artifact's SHA2_256 digest (messageSignature.messageDigest): "
            "the ledger records the artifact by it"
        )
    return ARTIFACT_SIGNATURE, (("sha256", message.digest.hex(), ""),), ()


def _signing_key(bundle: Bundle) -> PublicKey | None:
    """The certificate's key as a ledger key (Ed25519 or ECDSA P-256), for a keyless bundle."""
    cert = bundle.signing_certificate
    if cert is None:
        return None
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return public_key_from_der(der)
    except MalformedError as exc:
        raise MalformedError(f"the bundle's signing certificate has a key the ledger cannot record: {exc}") from exc


# ------------------------------------------------------------------------------ managed keys


def _hinted_key_id(hint: str | None) -> str | None:
    """A ``publicKey.hint`` as a key id: 64 hex digits, or base64 of the 32-byte SHA-256."""
    if not hint:
        return None
    if len(hint) == 64 and all(c in "0123456789abcdef" for c in hint.lower()):  # noqa: PLR2004
        return hint.lower()
    try:
        raw = base64.b64decode(hint, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None  # noqa: PLR2004


def _signs(key: PublicKey, bundle: Bundle) -> bool:
    """A cheap check that ``key`` made the bundle's content signature (before full verification)."""
    if bundle.envelope is not None:
        return key.verify(bundle.signature, bundle.envelope.pae())
    message = bundle.message_signature
    assert message is not None and message.digest is not None
    loaded = serialization.load_der_public_key(key.spki_der)
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        return True  # Ed25519 signs the artifact itself: verify_bundle says why it cannot check it
    try:
        loaded.verify(message.signature, message.digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except (InvalidSignature, ValueError):
        return False
    return True


def _managed_key(bundle: Bundle, registry: Any) -> PublicKey:
    """The registered key that signed a public-key bundle (SignatureError / NotTrustedError)."""
    hinted = _hinted_key_id(bundle.public_key_hint)
    if hinted is not None and hinted in registry:
        registered = registry[hinted]
        if not _signs(registered.key, bundle):
            raise SignatureError(f"the bundle's signature does not verify with key {hinted} ({registered.name})")
        return registered.key
    for registered in registry.values():
        if _signs(registered.key, bundle):
            return registered.key
    named = f" (its hint names key {hinted})" if hinted else ""
    raise NotTrustedError(f"the bundle is signed with a managed key that is not registered{named}")


# ------------------------------------------------------------------------------ judging


def _identity_record(verified: VerifiedBundle) -> dict[str, Any]:
    identity = verified.identity
    assert identity is not None
    return identity.to_record()


def _judge_keyless(
    verified: VerifiedBundle, registry: Any, predicate_type: str, names: list[str], now: int
) -> tuple[str, ...]:
    """The ids of the registered identities that make the bundle trusted, or NotTrustedError."""
    identity = verified.identity
    assert identity is not None
    # the pure rule the audit and the offline verifier apply to the leaf (ledger.trust.keyless)
    matched, misses = identity_matches(registry.state(), identity)
    if not matched:
        repo = identity.source_repository_uri
        message = (
            f"no identity grant for SAN {identity.san!r} from issuer {identity.issuer!r}"
            + (f" for source repository {repo!r}" if repo else " (the certificate names no source repository)")
        )
        if misses:
            message += "; registered identities of that issuer do not match: " + "; ".join(misses[:3])
        raise NotTrustedError(message + " (register one with `provledger identities add`)")
    verdict = judge(registry.state(), predicate_type=predicate_type, subject_names=names, key_ids=matched, time=now, index=APPENDING)
    if not verdict.trusted:
        raise NotTrustedError(verdict.message())
    return verdict.key_ids


def prepare_bundle(
    raw: bytes | str | Mapping[str, Any],
    registry: Any,
    *,
    now: int,
    limit: int = MAX_ENVELOPE_BYTES,
    roots: TrustedRoots | None = None,
) -> Any:
    """Parse, verify and judge one Sigstore bundle; returns an ``append.Prepared`` or raises.

    Args:
        raw: the bundle as submitted (bytes, text or a decoded JSON object).
        registry: a ``ledger.services.trust.TrustRegistry`` holding every registered key (for a
            public-key bundle) and every identity.
        now: the ledger's integration time (seconds): verified times after it are refused, and
            grants are judged at it.
        limit: the size limit (the envelope limit, so a bundle is held to the same 413).
        roots: the trusted roots (default: ``trusted_roots()``).

    Raises:
        TooLargeError, MalformedError (400), VerificationError (422), NotTrustedError (403),
        ConfigurationError (the trusted roots do not load).
    """
    data = _bytes_of(raw, limit)
    bundle = parse_bundle(data)
    doc = parse_json(data, what="bundle")  # parse_bundle has already refused what this refuses
    canonical = canonical_json(doc)
    predicate_type, subjects, edges = _content(bundle)
    names = [name for _, _, name in subjects]
    signing_key = _signing_key(bundle)

    when = datetime.fromtimestamp(now, tz=UTC)
    roots = roots if roots is not None else trusted_roots()
    if signing_key is not None:
        verified = verify_bundle(bundle, roots, now=when)
        trusted_ids = _judge_keyless(verified, registry, predicate_type, names, now)
        signers = tuple(Signer(i, signing_key.spki_der) for i in trusted_ids)
    else:
        signing_key = _managed_key(bundle, registry)
        verified = verify_bundle(bundle, roots, public_key=signing_key, now=when)
        verdict = judge(
            registry.state(), predicate_type=predicate_type, subject_names=names, key_ids=[signing_key.key_id], time=now,
            index=APPENDING,
        )
        if not verdict.trusted:
            raise NotTrustedError(verdict.message())
        signers = (Signer(signing_key.key_id, signing_key.spki_der),)

    first = min(verified.times, key=lambda t: t.time)
    signer: dict[str, Any] = {
        "key_id": signing_key.key_id,
        "public_key": base64.b64encode(signing_key.spki_der).decode("ascii"),
        "verified_time": int(first.time.timestamp()),
        "verified_time_source": first.source,
    }
    if verified.identity is not None:
        signer["identity"] = _identity_record(verified)
    if verified.inclusion == "promised":
        # A v0.1 bundle whose Rekor entry has a SET but no inclusion proof: the log promised to
        # include it, nobody proved it did. The chain shows it (``ledger.services.chain``).
        signer["tlog_inclusion"] = "promised"
    return Prepared(
        canonical=canonical,
        envelope_hash=hashlib.sha256(canonical).digest(),
        predicate_type=predicate_type,
        subjects=subjects,
        signers=signers,
        edges=edges,
        bundle_signer=canonical_json(signer),
    )
