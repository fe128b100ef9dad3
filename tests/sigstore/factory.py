"""A generated Sigstore world: a Fulcio-like CA (root → intermediate → 10-minute code-signing
leaf with Fulcio's issuer and source-repository extensions), a Rekor v1 log key (ECDSA P-256),
the trusted root naming both, and v0.1 bundles whose Rekor entry is built as Rekor builds it:
an ``intoto/0.0.2`` body without the payload (Rekor's Canonicalize drops it), ``dsse/0.0.2``
(Rekor v2), or ``dsse/0.0.1``,
with a SET over the entry and/or an inclusion proof under a signed checkpoint, each optional.

Everything is made here from the formats' specifications; nothing is copied from a sample.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger import merkle
from ledger.records.dsse import pae
from ledger.tlog.hashing import leaf_hash
from ledger.tlog.note import Note, Signature, format_note
from ledger.interop.sigstore import TrustedRoots, parse_trusted_root

#: verification happens at NOW; the entry was integrated at INTEGRATED, inside the leaf's window
NOW = datetime(2026, 6, 1, tzinfo=UTC)
INTEGRATED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LOG_HOST = "rekor.test.example"
TREE_ID = 4242
ISSUER = "https://token.actions.githubusercontent.com"
REPO = "https://github.com/acme/widget"
SAN = REPO + "/.github/workflows/release.yml@refs/heads/main"
ARTIFACT_SHA256 = hashlib.sha256(b"widget-1.0.0.tgz").hexdigest()
STATEMENT = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "pkg:npm/widget@1.0.0", "digest": {"sha256": ARTIFACT_SHA256}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1", "externalParameters": {}},
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
    },
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _utf8_ext(text: str) -> bytes:
    raw = text.encode("utf-8")
    assert len(raw) < 0x80  # noqa: PLR2004 - short-form DER length
    return b"\x0c" + bytes([len(raw)]) + raw


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    start: datetime,
    end: datetime,
    ca: bool,
    path_length: int | None = None,
    san: str | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        assert san is not None
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), _utf8_ext(ISSUER)), critical=False
            )
            .add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.12"), _utf8_ext(REPO)), critical=False
            )
        )
    return builder.sign(issuer_key, hashes.SHA256() if issuer_key.curve.key_size == 256 else hashes.SHA384())  # noqa: PLR2004


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class World:
    """One generated trust domain; ``bundle()`` makes bundles signed in it."""

    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    intermediate_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    signer_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    rekor_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC)
        self.root = _cert(_name("test-fulcio-root"), self.root_key, _name("test-fulcio-root"), self.root_key,
                          start=start, end=end, ca=True, path_length=1)
        self.intermediate = _cert(_name("test-fulcio-intermediate"), self.intermediate_key, _name("test-fulcio-root"),
                                  self.root_key, start=start, end=end, ca=True, path_length=0)
        self.leaf = self.issue(self.signer_key)

    def issue(self, key: ec.EllipticCurvePrivateKey, *, at: datetime = INTEGRATED, san: str = SAN) -> x509.Certificate:
        """A Fulcio-like leaf valid for ten minutes from a minute before ``at``."""
        start = at - timedelta(minutes=1)
        return _cert(x509.Name([]), key, _name("test-fulcio-intermediate"), self.intermediate_key,
                     start=start, end=start + timedelta(minutes=10), ca=False, san=san)

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.rekor_key)).digest()

    def trusted_root_json(self) -> bytes:
        valid = {"start": "2025-01-01T00:00:00Z"}
        return json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [
                    {
                        "baseUrl": f"https://{LOG_HOST}",
                        "hashAlgorithm": "SHA2_256",
                        "publicKey": {"rawBytes": _b64(_spki(self.rekor_key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": valid},
                        "logId": {"keyId": _b64(self.log_id)},
                    }
                ],
                "certificateAuthorities": [
                    {
                        "subject": {"organization": "test", "commonName": "test-fulcio"},
                        "uri": "https://fulcio.test.example",
                        "certChain": {
                            "certificates": [
                                {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                                for c in (self.intermediate, self.root)
                            ]
                        },
                        "validFor": valid,
                    }
                ],
                "ctlogs": [],
                "timestampAuthorities": [],
            }
        ).encode()

    def roots(self) -> TrustedRoots:
        return TrustedRoots((parse_trusted_root(self.trusted_root_json(), source="generated"),))

    # ---------------------------------------------------------------------------- bundles

    def envelope(self, statement: dict[str, Any] | None = None, key: ec.EllipticCurvePrivateKey | None = None) -> dict[str, Any]:
        payload = json.dumps(statement or STATEMENT).encode()
        payload_type = "application/vnd.in-toto+json"
        signer = key or self.signer_key
        digest = hashes.SHA384() if signer.curve.key_size == 384 else hashes.SHA256()  # the curve's hash, as Sigstore signs DSSE
        sig = signer.sign(pae(payload_type, payload), ec.ECDSA(digest))
        return {"payload": _b64(payload), "payloadType": payload_type, "signatures": [{"sig": _b64(sig), "keyid": ""}]}

    def intoto_body(self, envelope: dict[str, Any], cert: x509.Certificate | None = None, *, with_public_key_in_hash: bool = True) -> dict[str, Any]:
        """An ``intoto/0.0.2`` body as Rekor canonicalizes it: payloadType, signatures, hash and
        payloadHash; no payload. The envelope hash is sigstore-js's construction."""
        pem = (cert or self.leaf).public_bytes(serialization.Encoding.PEM).decode()
        sig = envelope["signatures"][0]
        item = {"sig": sig["sig"], **({"publicKey": pem} if with_public_key_in_hash else {})}
        if sig.get("keyid"):
            item["keyid"] = sig["keyid"]
        envelope_hash = hashlib.sha256(
            rfc8785.dumps({"payloadType": envelope["payloadType"], "payload": envelope["payload"], "signatures": [item]})
        ).hexdigest()
        payload_hash = hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()
        logged = {"sig": _b64(sig["sig"].encode()), "publicKey": _b64(pem.encode())}
        if sig.get("keyid"):
            logged["keyid"] = sig["keyid"]
        return {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {"payloadType": envelope["payloadType"], "signatures": [logged]},
                    "hash": {"algorithm": "sha256", "value": envelope_hash},
                    "payloadHash": {"algorithm": "sha256", "value": payload_hash},
                }
            },
        }

    def dsse_body(self, envelope: dict[str, Any]) -> dict[str, Any]:
        pem = self.leaf.public_bytes(serialization.Encoding.PEM)
        return {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()},
                "signatures": [{"signature": envelope["signatures"][0]["sig"], "verifier": _b64(pem)}],
            },
        }

    def hashedrekord_dsse_body(self, envelope: dict[str, Any], cert: x509.Certificate | None = None) -> dict[str, Any]:
        """A ``hashedrekord/0.0.1`` body logging a DSSE envelope, as sigstore-go writes it: the
        hash is SHA-256(PAE(payloadType, payload)), the signature the envelope's one signature,
        the public key the signing certificate's PEM."""
        digest = hashlib.sha256(pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))).hexdigest()
        pem = (cert or self.leaf).public_bytes(serialization.Encoding.PEM)
        return {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": digest}},
                "signature": {"content": envelope["signatures"][0]["sig"], "publicKey": {"content": _b64(pem)}},
            },
        }

    def dsse_v2_body(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """A Rekor v2 ``dsse/0.0.2`` body (``DSSELogEntryV002``): the payload's SHA2_256 digest
        in base64, and each signature's bytes with its verifier (the leaf certificate's DER)."""
        der = self.leaf.public_bytes(serialization.Encoding.DER)
        return {
            "apiVersion": "0.0.2",
            "kind": "dsse",
            "spec": {
                "dsseV002": {
                    "payloadHash": {"algorithm": "SHA2_256", "digest": _b64(hashlib.sha256(base64.b64decode(envelope["payload"])).digest())},
                    "signatures": [
                        {"content": sig["sig"], "verifier": {"x509Certificate": {"rawBytes": _b64(der)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}
                        for sig in envelope["signatures"]
                    ],
                }
            },
        }

    def tlog_entry(
        self,
        body: dict[str, Any],
        *,
        promise: bool = True,
        proof: bool = False,
        integrated: datetime = INTEGRATED,
        log_index: int = 123_456,
        set_key: ec.EllipticCurvePrivateKey | None = None,
        origin: str = f"{LOG_HOST} - {TREE_ID}",
    ) -> dict[str, Any]:
        raw = json.dumps(body, separators=(",", ":")).encode()
        entry: dict[str, Any] = {
            "logIndex": str(log_index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
            "integratedTime": str(int(integrated.timestamp())),
            "inclusionPromise": None,
            "inclusionProof": None,
            "canonicalizedBody": _b64(raw),
        }
        if promise:
            signed = rfc8785.dumps(
                {"body": _b64(raw), "integratedTime": int(integrated.timestamp()), "logID": self.log_id.hex(), "logIndex": log_index}
            )
            entry["inclusionPromise"] = {"signedEntryTimestamp": _b64((set_key or self.rekor_key).sign(signed, ec.ECDSA(hashes.SHA256())))}
        if proof:
            index, leaves = 3, [leaf_hash(f"other {i}".encode()) for i in range(6)]
            leaves[index] = leaf_hash(raw)
            root = merkle.root(leaves)
            text = f"{origin}\n{len(leaves)}\n{_b64(root)}\n"
            key_id = int.from_bytes(hashlib.sha256(_spki(self.rekor_key)).digest()[:4], "big")
            sig = self.rekor_key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
            note = format_note(Note(text=text, signatures=[Signature(LOG_HOST, key_id, sig)])).decode()
            entry["inclusionProof"] = {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(len(leaves)),
                "hashes": [_b64(h) for h in merkle.inclusion_proof(index, leaves)],
                "checkpoint": {"envelope": note},
            }
        return entry

    def bundle(
        self,
        *,
        kind: str = "intoto",
        version: str = "0.1",
        envelope: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        **entry_options: Any,
    ) -> dict[str, Any]:
        """A bundle (as a JSON value) of ``envelope`` logged as ``body`` (default: Rekor's)."""
        envelope = envelope or self.envelope()
        if body is None:
            body = self.intoto_body(envelope) if kind == "intoto" else self.dsse_body(envelope)
        return {
            "mediaType": f"application/vnd.dev.sigstore.bundle+json;version={version}",
            "verificationMaterial": {
                "x509CertificateChain": {"certificates": [{"rawBytes": _b64(self.leaf.public_bytes(serialization.Encoding.DER))}]},
                "tlogEntries": [self.tlog_entry(body, **entry_options)],
            },
            "dsseEnvelope": envelope,
        }


def verify(world: World, doc: dict[str, Any]) -> Any:
    """``doc`` verified against ``world``'s trusted root at NOW (``verify_bundle``'s result)."""
    from ledger.interop.sigstore import parse_bundle, verify_bundle  # noqa: PLC0415

    return verify_bundle(parse_bundle(encode(doc)), world.roots(), now=NOW)


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
