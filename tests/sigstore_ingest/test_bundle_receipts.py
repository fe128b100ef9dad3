"""Receipts of bundle entries verify offline; the bundle in them re-verifies with Sigstore checks;
one-bit flips and correctly logged but forged leaves fail; the command line end to end."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import LedgerError, MalformedError, VerificationError
from ledger.tlog.hashing import leaf_hash
from ledger.records.leaf import canonical_json
from ledger.interop.sigstore import load_trusted_roots, parse_bundle, verify_bundle
from ledger.tlog.proof import TlogProof, format_tlog_proof
from ledger.verify import verify_receipt
from tests.sigstore_ingest.conftest import BEACON_REPO, BEACON_SAN, GITHUB, HAPPY_DSSE, Policy, ok

MANAGED = "sigstore-bundles/conformance/managed-key-happy-path"


def _receipts(st: Any, provenance: Path) -> list[dict[str, Any]]:
    policy = Policy(st)
    policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    policy.key("release", (provenance / MANAGED / "key.pub").read_bytes())
    bodies = [(provenance / HAPPY_DSSE).read_bytes(), (provenance / MANAGED / "bundle.sigstore.json").read_bytes()]
    return [ok(r) for r in st.append(bodies, now=st.tick())]


def test_a_bundle_receipt_verifies_offline_and_says_what_it_did_not_check(bundle_store: Any, provenance: Path, sigstore_roots: str) -> None:
    dsse, managed = _receipts(bundle_store, provenance)
    for receipt, what in ((dsse, "DSSE envelope signature"), (managed, "message signature")):
        result = verify_receipt(json.dumps(receipt), bundle_store.log.vkey)
        assert result.index == receipt["index"]
        (note,) = result.notes
        assert what in note and "Not checked here: the certificate chain to Fulcio, the Rekor inclusion proof" in note
        assert "sigstore verify" in note
        # the bundle in the entry is the one Sigstore's checks accept, as it was submitted
        leaf = json.loads(base64.b64decode(receipt["entry"]))
        bundle = parse_bundle(json.dumps(leaf["bundle"]).encode())
        key = result.leaf.signers[0] if bundle.signing_certificate is None else None
        verified = verify_bundle(bundle, load_trusted_roots(sigstore_roots), public_key=key, now=datetime.now(UTC))
        assert verified.log_index == bundle.tlog_entries[0].log_index
    keyless = verify_receipt(json.dumps(dsse), bundle_store.log.vkey)
    assert keyless.leaf.signer["identity"]["issuer"] == GITHUB  # type: ignore[index]


def test_one_bit_flips_in_a_bundle_receipt_fail(bundle_store: Any, provenance: Path) -> None:
    dsse, _ = _receipts(bundle_store, provenance)
    entry = base64.b64decode(dsse["entry"])
    step = max(1, len(entry) // 97)
    for position in range(0, len(entry), step):
        for bit in (0, 5):
            flipped = bytearray(entry)
            flipped[position] ^= 1 << bit
            forged = {**dsse, "entry": base64.b64encode(bytes(flipped)).decode()}
            with pytest.raises((VerificationError, MalformedError)):
                verify_receipt(json.dumps(forged), bundle_store.log.vkey)
    proof = dsse["proof"].encode()
    for position in range(len(proof)):
        flipped = bytearray(proof)
        flipped[position] ^= 1
        with pytest.raises(LedgerError):
            verify_receipt(json.dumps({**dsse, "proof": flipped.decode("latin-1")}), bundle_store.log.vkey)


def _logged(st: Any, leaf: dict[str, Any]) -> dict[str, Any]:
    """A receipt for ``leaf`` in a one-entry log signed with the store's log key: the inclusion
    checks pass, so only the leaf's own checks (step 5) can refuse it."""
    data = canonical_json(leaf)
    note = sign_checkpoint(Checkpoint(origin=st.log.origin, size=1, root=leaf_hash(data)), st.log.signer)
    proof = format_tlog_proof(TlogProof(index=0, hashes=[], checkpoint=note))
    return {"index": 0, "tree_size": 1, "entry": base64.b64encode(data).decode(), "proof": proof}


def test_a_logged_leaf_with_a_forged_bundle_or_signer_fails(bundle_store: Any, provenance: Path) -> None:
    dsse, managed = _receipts(bundle_store, provenance)
    leaf = json.loads(base64.b64decode(dsse["entry"]))
    verify_receipt(json.dumps(_logged(bundle_store, leaf)), bundle_store.log.vkey)  # the control: it verifies

    sig = bytearray(base64.b64decode(leaf["bundle"]["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[10] ^= 1
    forged = json.loads(json.dumps(leaf))
    forged["bundle"]["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(VerificationError, match="not signed by the recorded signer"):
        verify_receipt(json.dumps(_logged(bundle_store, forged)), bundle_store.log.vkey)

    forged = json.loads(json.dumps(leaf))
    forged["signer"]["identity"]["san"] = "https://github.com/acme/widget/.github/workflows/release.yml@refs/heads/main"
    with pytest.raises(VerificationError, match="recorded signer identity"):
        verify_receipt(json.dumps(_logged(bundle_store, forged)), bundle_store.log.vkey)

    # the Fulcio claims too: a recorded source repository the certificate does not name
    forged = json.loads(json.dumps(leaf))
    forged["signer"]["identity"]["extensions"]["source_repository_uri"] = "https://github.com/acme/widget"
    with pytest.raises(VerificationError, match="recorded signer identity"):
        verify_receipt(json.dumps(_logged(bundle_store, forged)), bundle_store.log.vkey)
    forged = json.loads(json.dumps(leaf))
    del forged["signer"]["identity"]["extensions"]["source_repository_uri"]
    with pytest.raises(VerificationError, match="recorded signer identity"):
        verify_receipt(json.dumps(_logged(bundle_store, forged)), bundle_store.log.vkey)

    other = json.loads(base64.b64decode(managed["entry"]))
    forged = json.loads(json.dumps(leaf))
    forged["signer"] = {**forged["signer"], "key_id": other["signer"]["key_id"], "public_key": other["signer"]["public_key"]}
    with pytest.raises(VerificationError, match="not the bundle certificate's key"):
        verify_receipt(json.dumps(_logged(bundle_store, forged)), bundle_store.log.vkey)

    message = json.loads(base64.b64decode(managed["entry"]))
    digest = bytearray(base64.b64decode(message["bundle"]["messageSignature"]["messageDigest"]["digest"]))
    digest[0] ^= 1
    message["bundle"]["messageSignature"]["messageDigest"]["digest"] = base64.b64encode(bytes(digest)).decode()
    with pytest.raises(VerificationError, match="message signature is not by the recorded signer"):
        verify_receipt(json.dumps(_logged(bundle_store, message)), bundle_store.log.vkey)


def test_command_line_identities_submit_and_verify_receipt(bundle_store: Any, provenance: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.cli import main as cli_main  # noqa: PLC0415

    for k, v in bundle_store.env.items():
        if k.startswith("PROVLEDGER_"):
            monkeypatch.setenv(k, v)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_main.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("identities", "add", "--name", "beacon", "--san", BEACON_SAN, "--issuer", GITHUB,
                       "--source-repo", BEACON_REPO, "--allow", "https://slsa.dev/provenance/v1")
    assert code == 0, out
    identity_id = out.strip().splitlines()[-1]
    code, out, _ = run("identities", "list", "--json")
    assert code == 0 and json.loads(out)[0]["identity"]["source_repository"] == BEACON_REPO
    assert json.loads(out)[0]["key_id"] == identity_id
    code, receipt, err = run("submit", str(provenance / HAPPY_DSSE))
    assert code == 0, err
    (tmp_path / "receipt.json").write_text(receipt)
    code, out, err = run("verify-receipt", str(tmp_path / "receipt.json"), "--log-key", bundle_store.log.vkey)
    assert code == 0, err
    code, _, err = run("submit", str(provenance / HAPPY_DSSE))
    assert code == 0 and "duplicate" in err
    # the two vectors that must fail: exit 1 (does not verify), nothing appended
    size = bundle_store.size()
    for bad in ("dsse-mismatch-sig_fail", "intoto-expired-certificate_fail"):
        code, _, err = run("submit", str(provenance / "sigstore-bundles/conformance" / bad / "bundle.sigstore.json"))
        assert code == 1, err
    # another repository's workflow: exit 1 (not trusted); a malformed bundle: exit 2
    managed = provenance / MANAGED / "bundle.sigstore.json"
    code, _, err = run("submit", str(managed))
    assert code == 1 and "not registered" in err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}))
    code, _, err = run("submit", str(broken))
    assert code == 2 and "verificationMaterial" in err
    assert bundle_store.size() == size
    # keyless identities can be revoked like keys (by their id)
    assert run("keys", "revoke", identity_id)[0] == 0
    assert run("audit")[0] == 0
