"""A verified submission ready to be sequenced (``Prepared``) and the keys that signed it.

Plain values shared by the preparers (``ledger.services.append`` for DSSE envelopes,
``ledger.services.bundles`` for Sigstore bundles, ``ledger.services.deployment`` for appraisals)
and the sequencer; it imports none of them, so they import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.trust.policy import KeyEvent

__all__ = ["Prepared", "Signer"]


@dataclass(frozen=True)
class Signer:
    """A key that signed a record, as the leaf records it."""

    key_id: str
    spki_der: bytes


@dataclass(frozen=True)
class Prepared:
    """A submission that parsed, verified and is trusted: ready to be sequenced.

    Plain values only, so that preparation can run in other processes (``ledger.services.bulk``).
    """

    #: the envelope's RFC 8785 bytes
    canonical: bytes
    #: the duplicate identity: ``ledger.trust.fold.content_hash`` of the signed content and the
    #: keys whose signatures verify (a Sigstore bundle: SHA-256 of its RFC 8785 bytes)
    envelope_hash: bytes
    predicate_type: str
    #: (algorithm, lowercase digest, name) of each subject digest
    subjects: tuple[tuple[str, str, str], ...]
    signers: tuple[Signer, ...]
    #: (kind, algorithm, lowercase digest) of what the record depends on (``ledger.trust.graph``)
    edges: tuple[tuple[str, str, str], ...] = ()
    #: a key event to apply to the trust state when the entry is integrated
    key_event: KeyEvent | None = None
    #: a deployment record's TEE appraisal (RFC 8785 JSON), set by ``prepare_batch``
    #: (``ledger.services.deployment.complete_appraisals``) and stored with the entry
    appraisal: str | None = None
    #: a Sigstore bundle submission: the signer record's canonical JSON (``canonical`` is then
    #: the bundle's), so the leaf is a ``sigstore-bundle`` leaf (``ledger.services.bundles``)
    bundle_signer: bytes | None = None
    #: a deployment whose only failed check was the firmware match, with a firmware-image record
    #: measuring its claims earlier in its own batch: the sequencer appraises it under the lock,
    #: once that record has an index (``ledger.services.append.integrate``); ``appraisal`` is None
    appraise_in_sequence: bool = False
