"""The witness (c2sp.org/tlog-witness add-checkpoint): vectors, every refusal, split views, restarts."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint, verify_cosignatures
from ledger.errors import ConfigurationError, MalformedError, TooLargeError
from ledger.tlog.hashing import EMPTY_ROOT, leaf_hash
from ledger.tlog.note import Ed25519CosignatureSigner, Ed25519NoteSigner, parse_skey, parse_vkey
from ledger.tlog.witness import (
    MAX_PROOF_LINES,
    MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
    FileStateStore,
    LogState,
    MemoryStateStore,
    Witness,
    format_add_checkpoint,
    load_cosigner,
    parse_add_checkpoint,
)
from ledger.tlog.witness_policy import merge_cosignatures

NOW = 1_700_000_000


def _skey(notes: dict[str, Any], name: str) -> Ed25519NoteSigner:
    for group in notes["test_keypairs"]:
        for pair in group["pairs"]:
            if pair["vkey"].startswith(name + "+"):
                return parse_skey(pair["skey"])
    raise KeyError(name)


def _cosigner(skey: str) -> Ed25519CosignatureSigner:
    signer = parse_skey(skey)
    seed = base64.b64decode(skey.split("+", 4)[4])[1:]
    return Ed25519CosignatureSigner(signer.name, seed)


@pytest.fixture
def witness(monkeys: dict[str, Any], cosig_vector: dict[str, Any], tmp_path: Path) -> Witness:
    return Witness.from_vkeys(
        _cosigner(cosig_vector["witness_skey_note_format"]),
        [monkeys["log_vkey"]],
        FileStateStore(tmp_path / "state.json"),
    )


def _proof(monkeys: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(h) for h in monkeys["consistency_proof_5_to_8_hex"]]


def _body(old: int, proof: list[bytes], note: bytes | str) -> bytes:
    return format_add_checkpoint(old, proof, note)


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]


# ------------------------------------------------------------------------------ the vector


def test_monkeys_5_to_8_is_cosigned_byte_exact(
    witness: Witness, monkeys: dict[str, Any], cosig_vector: dict[str, Any]
) -> None:
    assert witness.vkey == cosig_vector["witness_vkey_cosig_type4"]
    first = witness.add_checkpoint(_body(0, [], monkeys["checkpoint_size5"]), now=NOW - 10)
    assert first.status == 200, first.body
    body = monkeys["c2sp_add_checkpoint_request_body_derived"].encode()
    assert _body(5, _proof(monkeys), monkeys["checkpoint_size8"]) == body
    reply = witness.add_checkpoint(body, now=cosig_vector["timestamp"])
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain")
    assert reply.body.decode() == cosig_vector["cosignature_line"]
    cosigned = merge_cosignatures(
        monkeys["checkpoint_size8"], reply.body, [parse_vkey(witness.vkey)]
    )
    assert cosigned.decode() == cosig_vector["cosigned_checkpoint"]
    assert verify_cosignatures(cosigned, [parse_vkey(witness.vkey)], 1) == ["witness"]


def test_first_checkpoint_needs_old_zero_and_an_empty_proof(
    witness: Witness, monkeys: dict[str, Any]
) -> None:
    # A witness that has seen nothing is at size 0: old 5 is a conflict naming size 0.
    conflict = witness.add_checkpoint(
        _body(5, _proof(monkeys), monkeys["checkpoint_size8"]), now=NOW
    )
    assert (conflict.status, conflict.body, conflict.content_type) == (
        409,
        b"0\n",
        SIZE_CONTENT_TYPE,
    )
    bad = witness.add_checkpoint(
        _body(0, _proof(monkeys)[:1], monkeys["checkpoint_size8"]), now=NOW
    )
    assert bad.status == 422 and b"size 0 must be empty" in bad.body
    assert witness.add_checkpoint(_body(0, [], monkeys["checkpoint_size8"]), now=NOW).status == 200


# ------------------------------------------------------------------------------ refusals


@pytest.fixture
def at_8(witness: Witness, monkeys: dict[str, Any]) -> Witness:
    assert witness.add_checkpoint(_body(0, [], monkeys["checkpoint_size5"]), now=NOW).status == 200
    body = monkeys["c2sp_add_checkpoint_request_body_derived"].encode()
    assert witness.add_checkpoint(body, now=NOW).status == 200
    return witness


def _monkeys_checkpoint(notes: dict[str, Any], size: int, root: bytes) -> bytes:
    return sign_checkpoint(Checkpoint("monkeys", size, root), _skey(notes, "monkeys"))


def test_split_view_of_the_same_size_is_a_conflict(at_8: Witness, notes: dict[str, Any]) -> None:
    """The log signs a second, different tree of size 8: the witness refuses to cosign it."""
    other = _monkeys_checkpoint(notes, 8, bytes(32))
    reply = at_8.add_checkpoint(_body(8, [], other), now=NOW)
    assert (reply.status, reply.body, reply.content_type) == (409, b"8\n", SIZE_CONTENT_TYPE)
    assert at_8.store.load()["monkeys"].root != bytes(32)


def test_replaying_the_same_checkpoint_is_cosigned_again(
    at_8: Witness, monkeys: dict[str, Any]
) -> None:
    reply = at_8.add_checkpoint(_body(8, [], monkeys["checkpoint_size8"]), now=NOW + 1)
    assert reply.status == 200
    assert at_8.store.load()["monkeys"].size == 8


def test_equal_sizes_with_a_proof_are_unprocessable(at_8: Witness, monkeys: dict[str, Any]) -> None:
    reply = at_8.add_checkpoint(_body(8, _proof(monkeys)[:1], monkeys["checkpoint_size8"]), now=NOW)
    assert reply.status == 422


def test_wrong_old_size_is_a_conflict_with_the_size_body(
    at_8: Witness, monkeys: dict[str, Any]
) -> None:
    for old in (0, 5, 7):
        reply = at_8.add_checkpoint(_body(old, [], monkeys["checkpoint_size8"]), now=NOW)
        assert (reply.status, reply.body, reply.content_type) == (409, b"8\n", SIZE_CONTENT_TYPE)


def test_old_larger_than_new_is_a_bad_request(at_8: Witness, monkeys: dict[str, Any]) -> None:
    """A rollback: the size-5 checkpoint again, claiming old 8."""
    reply = at_8.add_checkpoint(_body(8, [], monkeys["checkpoint_size5"]), now=NOW)
    assert reply.status == 400 and b"larger" in reply.body
    assert at_8.store.load()["monkeys"].size == 8


def test_bad_consistency_proofs_are_unprocessable(at_8: Witness, notes: dict[str, Any]) -> None:
    bigger = _monkeys_checkpoint(notes, 10, bytes(range(32)))
    for proof in ([], [bytes(32)], [bytes(32)] * 3, [bytes(32)] * 10):
        reply = at_8.add_checkpoint(_body(8, proof, bigger), now=NOW)
        assert reply.status == 422, proof
    assert at_8.store.load()["monkeys"].size == 8


def test_one_bit_flips_of_the_vector_proof_are_unprocessable(
    witness: Witness, monkeys: dict[str, Any]
) -> None:
    witness.add_checkpoint(_body(0, [], monkeys["checkpoint_size5"]), now=NOW)
    proof = _proof(monkeys)
    for i in range(len(proof)):
        for bit in (0, 100, 255):
            bad = list(proof)
            h = bytearray(bad[i])
            h[bit // 8] ^= 1 << (bit % 8)
            bad[i] = bytes(h)
            reply = witness.add_checkpoint(_body(5, bad, monkeys["checkpoint_size8"]), now=NOW)
            assert reply.status == 422, (i, bit)
    assert (
        witness.add_checkpoint(_body(5, proof[:-1], monkeys["checkpoint_size8"]), now=NOW).status
        == 422
    )
    assert (
        witness.add_checkpoint(_body(5, proof[::-1], monkeys["checkpoint_size8"]), now=NOW).status
        == 422
    )
    assert witness.store.load()["monkeys"].size == 5  # type: ignore[attr-defined]
    # Untouched, the same proof is accepted.
    assert (
        witness.add_checkpoint(_body(5, proof, monkeys["checkpoint_size8"]), now=NOW).status == 200
    )


def test_unknown_origin_is_not_found(witness: Witness, notes: dict[str, Any]) -> None:
    note = sign_checkpoint(Checkpoint("bananas", 1, bytes(32)), _skey(notes, "bananas"))
    reply = witness.add_checkpoint(_body(0, [], note), now=NOW)
    assert reply.status == 404 and b"bananas" in reply.body


def _with_signature_bit_flipped(note: str, bit: int) -> bytes:
    text, sig_line = note.rsplit("\n\n", 1)
    prefix, encoded = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[4 + bit // 8] ^= 1 << (bit % 8)  # after the 4-byte key id
    return f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n".encode()


def test_bad_or_missing_log_signature_is_forbidden(
    witness: Witness, monkeys: dict[str, Any]
) -> None:
    for bit in (0, 7, 255, 511):
        bad = _with_signature_bit_flipped(monkeys["checkpoint_size5"], bit)
        reply = witness.add_checkpoint(_body(0, [], bad), now=NOW)
        assert (
            reply.status == 403 and b"invalid signature for key monkeys+db4d9f7e" in reply.body
        ), bit
    # A valid signature by a key the witness does not trust for "monkeys".
    impostor = Ed25519NoteSigner("monkeys", bytes(32))
    reply = witness.add_checkpoint(
        _body(0, [], sign_checkpoint(Checkpoint("monkeys", 5, bytes(32)), impostor)), now=NOW
    )
    assert reply.status == 403 and b"no verifiable signatures" in reply.body
    # The checkpoint text changed under the log's signature.
    tampered = monkeys["checkpoint_size5"].encode().replace(b"\n5\n", b"\n6\n")
    assert witness.add_checkpoint(_body(0, [], tampered), now=NOW).status == 403
    assert witness.store.load() == {}  # type: ignore[attr-defined]


def test_signatures_by_unknown_keys_are_ignored(witness: Witness, monkeys: dict[str, Any]) -> None:
    note = monkeys["checkpoint_size5"]
    root = base64.b64decode(note.split("\n")[2])
    extra = sign_checkpoint(Checkpoint("monkeys", 5, root), Ed25519NoteSigner("other", bytes(32)))
    combined = note.encode() + extra.split(b"\n\n", 1)[1]
    assert witness.add_checkpoint(_body(0, [], combined), now=NOW).status == 200
    # ... but a bad signature by the known key next to them still refuses.
    witness2 = Witness(witness.cosigner, witness.logs, MemoryStateStore())
    bad = _with_signature_bit_flipped(note, 3) + extra.split(b"\n\n", 1)[1]
    assert witness2.add_checkpoint(_body(0, [], bad), now=NOW).status == 403


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0",
        b"old 0\n",
        b"old 00\n\n",
        b"old -1\n\n",
        b"old 1 \n\n",
        b"Old 0\n\n",
        b"old 18446744073709551616\n\n",
        b"old 0\nAAAA\n\n",  # a 3-byte hash
        b"old 0\n" + base64.b64encode(bytes(32)).rstrip(b"=") + b"\n\n",
        b"old 0\n" + b"\xff\n\n",
        b"old 0\n\nnot a checkpoint\n",
        b"old 0\n\nmonkeys\n5\nroot\n\n\xe2\x80\x94 monkeys AAAAAAA=\n",
    ],
)
def test_malformed_requests_are_bad_requests(witness: Witness, body: bytes) -> None:
    reply = witness.add_checkpoint(body, now=NOW)
    assert reply.status == 400, reply.body
    with pytest.raises(MalformedError):
        parse_add_checkpoint(body)


def test_too_many_proof_lines_and_oversized_requests(
    witness: Witness, monkeys: dict[str, Any]
) -> None:
    line = base64.b64encode(bytes(32)) + b"\n"
    body = b"old 5\n" + line * (MAX_PROOF_LINES + 1) + b"\n" + monkeys["checkpoint_size8"].encode()
    assert witness.add_checkpoint(body, now=NOW).status == 400
    with pytest.raises(MalformedError, match="more than 63"):
        parse_add_checkpoint(body)
    huge = b"old 0\n\n" + b"x" * MAX_REQUEST_BYTES
    assert witness.add_checkpoint(huge, now=NOW).status == 413
    with pytest.raises(TooLargeError):
        parse_add_checkpoint(huge)


# ------------------------------------------------------------------------------ size 0 and a real log


def test_size_zero_rules() -> None:
    log = Ed25519NoteSigner("example.com/log", bytes([7]) * 32)
    w = Witness.from_vkeys(
        Ed25519CosignatureSigner("w", bytes([8]) * 32), [log.vkey], MemoryStateStore()
    )
    wrong = sign_checkpoint(Checkpoint(log.name, 0, bytes(32)), log)
    reply = w.add_checkpoint(_body(0, [], wrong), now=NOW)
    assert reply.status == 422 and b"SHA-256" in reply.body
    empty = sign_checkpoint(Checkpoint(log.name, 0, EMPTY_ROOT), log)
    assert w.add_checkpoint(_body(0, [bytes(32)], empty), now=NOW).status == 422
    assert w.add_checkpoint(_body(0, [], empty), now=NOW).status == 200


def test_a_forked_log_is_caught_with_real_consistency_proofs() -> None:
    """The log shows tree A to the witness, then tree B (entry 2 rewritten) with B's own valid proof."""
    log = Ed25519NoteSigner("example.com/forky", bytes([9]) * 32)
    w = Witness.from_vkeys(
        Ed25519CosignatureSigner("w", bytes([10]) * 32), [log.vkey], MemoryStateStore()
    )
    tree_a = [leaf_hash(f"entry {i}".encode()) for i in range(20)]
    tree_b = list(tree_a)
    tree_b[2] = leaf_hash(b"rewritten")

    def checkpoint(leaves: list[bytes]) -> bytes:
        return sign_checkpoint(Checkpoint(log.name, len(leaves), merkle.root(leaves)), log)

    assert w.add_checkpoint(_body(0, [], checkpoint(tree_a[:5])), now=NOW).status == 200
    for new in (6, 8, 13, 20):  # honest growth: each step proven from the last
        old = w.store.states[log.name].size  # type: ignore[attr-defined]
        proof = merkle.consistency_proof(old, tree_a[:new])
        assert w.add_checkpoint(_body(old, proof, checkpoint(tree_a[:new])), now=NOW).status == 200
    for new in (20, 24):
        fork = tree_b[:new] + [leaf_hash(b"more")] * (new - 20)
        proof = merkle.consistency_proof(20, fork) if new > 20 else []
        reply = w.add_checkpoint(_body(20, proof, checkpoint(fork)), now=NOW)
        assert reply.status == (409 if new == 20 else 422), new
    assert w.store.states[log.name].root == merkle.root(tree_a)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ state


def test_state_survives_a_restart(
    at_8: Witness, monkeys: dict[str, Any], cosig_vector: dict[str, Any]
) -> None:
    path = at_8.store.path  # type: ignore[attr-defined]
    doc = json.loads(path.read_text())
    assert doc["logs"]["monkeys"]["size"] == 8
    assert doc["logs"]["monkeys"]["checkpoint"] == monkeys["checkpoint_size8"]
    restarted = Witness.from_vkeys(
        _cosigner(cosig_vector["witness_skey_note_format"]),
        [monkeys["log_vkey"]],
        FileStateStore(path),
    )
    reply = restarted.add_checkpoint(
        monkeys["c2sp_add_checkpoint_request_body_derived"].encode(), now=NOW
    )
    assert (reply.status, reply.body) == (409, b"8\n")
    assert not list(path.parent.glob(".state.json.*")), "no temporary file is left behind"


def test_state_is_persisted_before_the_reply(witness: Witness, monkeys: dict[str, Any]) -> None:
    class FailingStore(FileStateStore):
        def save(self, states: Any) -> None:
            raise OSError("disk full")

    failing = Witness(witness.cosigner, witness.logs, FailingStore(witness.store.path))  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="disk full"):
        failing.add_checkpoint(_body(0, [], monkeys["checkpoint_size5"]), now=NOW)
    assert witness.store.load() == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 2, "logs": {}}',
        '{"version": 1, "logs": {"monkeys": {"size": -1, "root": "' + "A" * 43 + '="}}}',
        '{"version": 1, "logs": {"monkeys": {"size": 1, "root": "AAAA"}}}',
        '{"version": 1, "logs": {"monkeys": {"size": "1", "root": "' + "A" * 43 + '="}}}',
    ],
)
def test_a_damaged_state_file_stops_the_witness(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="damaged"):
        FileStateStore(path).load()


def test_concurrent_requests_cannot_roll_the_state_back(
    witness: Witness, monkeys: dict[str, Any]
) -> None:
    """The spec's race: many requests from old 5 at once; exactly one is cosigned."""
    witness.add_checkpoint(_body(0, [], monkeys["checkpoint_size5"]), now=NOW)
    body = monkeys["c2sp_add_checkpoint_request_body_derived"].encode()
    statuses: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        other = Witness(witness.cosigner, witness.logs, FileStateStore(witness.store.path))  # type: ignore[attr-defined]
        status = other.add_checkpoint(body, now=NOW).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 7


def test_memory_store_and_log_state() -> None:
    store = MemoryStateStore({"a": LogState(1, bytes(32))})
    with store.transaction() as states:
        states["b"] = LogState(2, bytes(32))
    assert set(store.states) == {"a", "b"}


def test_load_cosigner(tmp_path: Path, cosig_vector: dict[str, Any]) -> None:
    path = tmp_path / "witness.key"
    path.write_text(cosig_vector["witness_skey_note_format"] + "\n")
    assert load_cosigner(path).vkey == cosig_vector["witness_vkey_cosig_type4"]
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_cosigner(tmp_path / "missing.key")
    path.write_text("PRIVATE+KEY+witness+00000000+AAAA\n")
    with pytest.raises(ConfigurationError, match="not a valid signer key"):
        load_cosigner(path)
