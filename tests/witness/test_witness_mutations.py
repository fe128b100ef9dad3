"""Seeded random mutations of the real add-checkpoint request (c2sp.org/tlog-witness vector):
each gets one of the protocol's answers, never an exception, and the witness cosigns only
what the log signed (a 200 means the checkpoint text is the genuine one)."""

from __future__ import annotations

import random
from typing import Any

from ledger.tlog.witness import MemoryStateStore, Witness, format_add_checkpoint
from tests.witness.test_witness import NOW, _cosigner

CASES = 1500
ANSWERS = {200, 400, 403, 404, 409, 413, 422}
_INSERTS = [b"\n", b"\n\n", b" ", b"\x00", b"\xff", b"old 18446744073709551616\n", b"\xe2\x80\x94 ", b"+", b"=="]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    out = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.3 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif op < 0.5 and out:
            at = rng.randrange(len(out))
            del out[at : at + rng.randint(1, 20)]
        elif op < 0.7:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.choice(_INSERTS)
        elif op < 0.78 and out:
            del out[rng.randrange(len(out)) :]
        elif op < 0.85:  # an extension line in the checkpoint text: well formed, but not what the log signed
            head, blank, note = bytes(out).partition(b"\n\n")
            lines = note.split(b"\n")
            if blank and len(lines) > 3:
                lines.insert(3, rng.choice([b"extension", b"Timestamp: 1", b"\xe2\x80\x94 x"]))
                out = bytearray(head + blank + b"\n".join(lines))
        else:
            lines = bytes(out).split(b"\n")
            rng.shuffle(lines)
            out = bytearray(b"\n".join(lines))
    return bytes(out)


def _checkpoint_text(body: bytes) -> bytes | None:
    """The signed text of the request's checkpoint (up to its signature block), if it has one."""
    _, blank, note = body.partition(b"\n\n")
    text, sep, _ = note.partition(b"\n\n")
    return text if blank and sep else None


def test_mutated_requests_get_protocol_answers_and_only_the_signed_text_is_cosigned(
    monkeys: dict[str, Any], cosig_vector: dict[str, Any]
) -> None:
    genuine = monkeys["c2sp_add_checkpoint_request_body_derived"].encode()
    signed_text = _checkpoint_text(genuine)
    rng = random.Random(2026)
    seen: dict[int, int] = {}
    for case in range(CASES):
        witness = Witness.from_vkeys(_cosigner(cosig_vector["witness_skey_note_format"]), [monkeys["log_vkey"]], MemoryStateStore())
        assert witness.add_checkpoint(format_add_checkpoint(0, [], monkeys["checkpoint_size5"]), now=NOW).status == 200
        body = _mutate(genuine, rng)
        reply = witness.add_checkpoint(body, now=NOW)
        assert reply.status in ANSWERS, (case, reply.status, body[:200])
        assert reply.body and len(reply.body) < 4096, (case, reply.status)
        if reply.status == 200:
            assert _checkpoint_text(body) == signed_text, (case, body[:300])
        seen[reply.status] = seen.get(reply.status, 0) + 1
    assert seen.get(400, 0) > CASES // 3 and len(seen) >= 4, seen  # the mutations reach every stage
