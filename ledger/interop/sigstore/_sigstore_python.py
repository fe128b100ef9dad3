"""sigstore-python's own ``Verifier``, run over the bundles it covers, offline.

sigstore-python 4.x verifies keyless bundles whose entry is ``hashedrekord/0.0.1``,
``hashedrekord/0.0.2`` or ``dsse/0.0.1`` (a DSSE envelope only as ``hashedrekord/0.0.2`` or
``dsse/0.0.1``). It does not load public-key bundles, ``intoto/0.0.2`` or ``dsse/0.0.2``
entries, or bundles without an inclusion proof; :mod:`ledger.interop.sigstore.verify` covers those with its
own checks. The trusted root is built from the configured file's bytes (no TUF refresh, no
network); identity policy is ours (:mod:`ledger.interop.sigstore.identity`), so the policy given to
sigstore-python accepts any certificate identity.
"""

from __future__ import annotations

import functools

from cryptography.x509 import Certificate

from ledger.errors import VerificationError
from ledger.interop.sigstore.bundle import Bundle

__all__ = ["covers", "verify_with_sigstore_python"]

_COVERED_KINDS = frozenset({"hashedrekord/0.0.1", "hashedrekord/0.0.2", "dsse/0.0.1"})


class _AnyIdentity:
    """A sigstore-python VerificationPolicy that leaves identity to the caller's policy."""

    def verify(self, cert: Certificate) -> None:
        del cert


def covers(bundle: Bundle) -> bool:
    """Whether sigstore-python's Verifier handles this bundle."""
    if not bundle.is_keyless or len(bundle.tlog_entries) != 1:
        return False
    entry = bundle.tlog_entries[0]
    if entry.kind_version not in _COVERED_KINDS or entry.inclusion_proof is None or entry.inclusion_proof.checkpoint is None:
        return False  # (sigstore-python needs the proof's checkpoint, even in a v0.1 bundle)
    if bundle.envelope is not None and entry.kind_version == "hashedrekord/0.0.1":
        return False  # DSSE logged as hashedrekord/0.0.1: sigstore-python 4.x takes only 0.0.2 for DSSE
    message = bundle.message_signature
    return message is None or message.digest_algorithm in (None, "SHA2_256")


@functools.lru_cache(maxsize=16)
def _trusted_root(document: bytes) -> object:
    from sigstore.models import TrustedRoot  # noqa: PLC0415 - heavy import, only when needed
    from sigstore_models.trustroot import v1 as trustroot_v1  # noqa: PLC0415

    return TrustedRoot(trustroot_v1.TrustedRoot.from_json(document))


def verify_with_sigstore_python(bundle: Bundle, root_document: bytes, digest: bytes | None) -> None:
    """Run sigstore-python's Verifier; raise VerificationError if it refuses the bundle.

    ``digest`` is the SHA-256 of the signed artifact, for a message signature.
    """
    from sigstore.errors import Error as SigstoreError  # noqa: PLC0415
    from sigstore.hashes import Hashed  # noqa: PLC0415
    from sigstore.models import Bundle as SigstoreBundle  # noqa: PLC0415
    from sigstore.verify import Verifier  # noqa: PLC0415
    from sigstore_models.common.v1 import HashAlgorithm  # noqa: PLC0415

    try:
        verifier = Verifier(trusted_root=_trusted_root(root_document))  # type: ignore[arg-type]
        parsed = SigstoreBundle.from_json(bundle.raw)
        if bundle.envelope is not None:
            verifier.verify_dsse(parsed, _AnyIdentity())
        else:
            assert digest is not None
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
            verifier.verify_artifact(hashed, parsed, _AnyIdentity())
    except SigstoreError as exc:
        raise VerificationError(f"sigstore-python refuses the bundle: {exc}") from exc
    except (ValueError, TypeError) as exc:  # pydantic validation and friends
        raise VerificationError(f"sigstore-python cannot load the bundle: {exc}") from exc
