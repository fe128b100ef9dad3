"""C2SP signed notes (c2sp.org/signed-note): parse, format, sign and verify.

A signed note is a UTF-8 text ending in a newline, a blank line, and one or more signature
lines ``— <name> <base64(key_id[4] || signature)>``. The text is everything up to and including
the newline before the *last* blank line, so the text itself may contain blank lines.

This module is pure (stdlib, PyNaCl, cryptography) and takes bytes. Parsing is strict: every
input that is not in the one accepted encoding raises :class:`~ledger.errors.MalformedError`.
Verification follows the C2SP rules:

* signatures whose (name, key id) pair is unknown are ignored;
* a known key whose signature does not verify makes the note invalid;
* a note with no known key that verifies is invalid;
* a second signature by the same (name, key id) is dropped.

Signature types handled here (the first byte of a verifier key):

=====  ==========================================  ===========================================
type   signature                                   key id
=====  ==========================================  ===========================================
0x01   Ed25519 over the text                       SHA-256(name || LF || 0x01 || pub32)[:4]
0x02   ECDSA P-256 SHA-256 (DER) over the text     SHA-256(DER SPKI)[:4] (name not hashed)
0x04   Ed25519 cosignature/v1 (timestamped)        SHA-256(name || LF || 0x04 || pub32)[:4]
0x05   RFC 6962 TreeHeadSignature (static-ct-api)  SHA-256(name || LF || 0x05 || SHA-256(SPKI))[:4]
=====  ==========================================  ===========================================

The package face re-exports the API of its modules: :mod:`.encoding` (the text format),
:mod:`.verifiers` (verifier keys and verification) and :mod:`.signers` (signer keys, signing).
"""

from __future__ import annotations

from ledger.tlog.note.encoding import (
    MAX_NOTE_BYTES,
    MAX_NOTE_SIGNATURES,
    Note,
    SIG_COSIGNATURE_V1,
    SIG_ECDSA,
    SIG_ED25519,
    SIG_RFC6962,
    Signature,
    b64decode_canonical,
    format_note,
    is_valid_key_name,
    parse_note,
)
from ledger.tlog.note.verifiers import (
    CosignatureV1Verifier,
    ECDSAVerifier,
    Ed25519Verifier,
    NoteVerification,
    RFC6962Verifier,
    VerifiedSignature,
    Verifier,
    cosignature_message,
    format_vkey,
    parse_vkey,
    verify_note,
    verify_note_result,
)
from ledger.tlog.note.signers import (
    Ed25519CosignatureSigner,
    Ed25519NoteSigner,
    NoteSigner,
    append_signatures,
    format_skey,
    generate_signer,
    parse_skey,
    sign_note,
)

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_NOTE_SIGNATURES",
    "SIG_COSIGNATURE_V1",
    "SIG_ECDSA",
    "SIG_ED25519",
    "SIG_RFC6962",
    "CosignatureV1Verifier",
    "ECDSAVerifier",
    "Ed25519CosignatureSigner",
    "Ed25519NoteSigner",
    "Ed25519Verifier",
    "Note",
    "NoteSigner",
    "NoteVerification",
    "RFC6962Verifier",
    "Signature",
    "VerifiedSignature",
    "Verifier",
    "append_signatures",
    "b64decode_canonical",
    "cosignature_message",
    "format_note",
    "format_skey",
    "format_vkey",
    "generate_signer",
    "is_valid_key_name",
    "parse_note",
    "parse_skey",
    "parse_vkey",
    "sign_note",
    "verify_note",
    "verify_note_result",
]
