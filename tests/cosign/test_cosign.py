"""The ledger collects witness cosignatures from real witnesses over HTTP, keeps only those that
verify, serves checkpoints with them, and its receipts pass a k-of-n witness policy."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from werkzeug.serving import make_server

from ledger.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint, verify_cosignatures
from ledger.db import store as dbstore
from ledger.db.models import CheckpointCosignature
from ledger.errors import ConfigurationError, MalformedError, NotFoundError, VerificationError
from ledger.tlog.note import Ed25519CosignatureSigner, parse_note, verify_note_result
from ledger.services import receipts
from ledger.services.cosign import (
    CosignLoop,
    CosignRound,
    WitnessEndpoint,
    cosigned_note,
    cosigned_notes,
    http_post,
    latest_cosigned_note,
    latest_witnessed_checkpoint,
    parse_witness_urls,
    request_cosignatures,
    witness_config_from_env,
)
from ledger.tlog.witness import format_add_checkpoint
from ledger.tlog.witness_policy import parse_witness_policy, verify_receipt_with_witnesses
from tests.cosign.helpers import Appender, RunningWitness, Witnesses, Wsgi
from tests.fixtures import StoreHandle

NOW = 1_760_000_500


def _round(store: StoreHandle, endpoints: Iterable[WitnessEndpoint | RunningWitness], timeout: float = 5.0) -> CosignRound:
    eps = [e.endpoint if isinstance(e, RunningWitness) else e for e in endpoints]
    return request_cosignatures(store.sessions, store.log, eps, timeout=timeout, now=NOW)


def _statuses(result: CosignRound) -> list[str]:
    return [o.status for o in result.outcomes]


def _rows(store: StoreHandle, tree_size: int | None = None) -> list[tuple[int, str, str, str]]:
    with store.sessions() as session:
        q = select(CheckpointCosignature.tree_size, CheckpointCosignature.witness, CheckpointCosignature.key_id, CheckpointCosignature.line)
        if tree_size is not None:
            q = q.where(CheckpointCosignature.tree_size == tree_size)
        return [tuple(r) for r in session.execute(q.order_by(CheckpointCosignature.tree_size, CheckpointCosignature.witness))]  # type: ignore[misc]


def _latest(store: StoreHandle) -> tuple[int, str, str]:
    """(tree size, the log-signed note, the note as served with its cosignatures)."""
    with store.sessions() as session:
        cp = dbstore.latest_checkpoint(session)
        assert cp is not None
        return cp.tree_size, cp.note, cosigned_note(session, cp.tree_size, cp.note)


def _receipt(store: StoreHandle, index: int) -> dict[str, Any]:
    """A receipt the way the ledger issues it: against the latest checkpoint, cosignatures merged."""
    with store.sessions() as session:
        cp = dbstore.latest_checkpoint(session)
        assert cp is not None
        note = cosigned_note(session, cp.tree_size, cp.note)
        return receipts.receipts(session, [index], tree_size=cp.tree_size, checkpoint_note=note)[0]


def _post_forged_checkpoint(store: StoreHandle, witness: RunningWitness, size: int) -> None:
    """Show ``witness`` a checkpoint the log signed but that is not of this tree (a split view)."""
    forged = sign_checkpoint(Checkpoint(origin=store.log.origin, size=size, root=os.urandom(32)), store.log.signer)
    reply = http_post(witness.url + "/add-checkpoint", format_add_checkpoint(0, [], forged), 5.0)
    assert reply.status == 200, reply


# ------------------------------------------------------------------------------ collecting


def test_witnesses_cosign_and_their_cosignatures_verify(witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle) -> None:
    store = sqlite_store
    ws = witnesses.start(3)
    appender.batches([3, 4])
    size, note, served = _latest(store)
    assert size == 8

    result = _round(store, ws)
    assert result.tree_size == 8
    assert _statuses(result) == ["cosigned"] * 3
    rows = _rows(store)
    assert [(r[0], r[1], r[2]) for r in rows] == [(8, w.name, f"{w.cosigner.key_id:08x}") for w in ws]

    # Every stored line is a cosignature/v1 by that witness over this checkpoint's text.
    checkpoint_text = parse_note(note).text
    for (_, _, _, line), w in zip(rows, ws, strict=True):
        assert verify_note_result(checkpoint_text + "\n" + line + "\n", [w.cosigner.verifier()]).ok

    # The note as served carries them, and still verifies as the log's checkpoint.
    _, _, served = _latest(store)
    assert served.startswith(note)
    assert served.count("\u2014 ") == 4
    open_checkpoint(served, store.log.verifier)
    assert sorted(verify_cosignatures(served, [w.cosigner.verifier() for w in ws], 3)) == [w.name for w in ws]

    # Asking again changes nothing (idempotent).
    assert _statuses(_round(store, ws)) == ["already"] * 3
    assert _rows(store) == rows

    # A larger tree: each witness gets a real consistency proof from the size it cosigned.
    appender.batches([5])
    result = _round(store, ws)
    assert result.tree_size == 13
    assert _statuses(result) == ["cosigned"] * 3
    assert len(_rows(store, 13)) == 3
    for w in ws:
        assert w.store.load()[store.log.origin].size == 13

    receipt = _receipt(store, 2)
    verified = verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=[w.vkey for w in ws], threshold=3)
    assert sorted(verified.witnesses) == [w.name for w in ws]


def test_threshold_when_a_witness_is_down(witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle) -> None:
    store = sqlite_store
    ws = witnesses.start(3)
    appender.batches([2])
    assert _statuses(_round(store, ws)) == ["cosigned"] * 3

    ws[2].stop()
    appender.batches([3])
    result = _round(store, ws)
    assert _statuses(result) == ["cosigned", "cosigned", "unreachable"]
    assert len(_rows(store, result.tree_size)) == 2

    receipt = _receipt(store, 4)
    vkeys = [w.vkey for w in ws]
    assert len(verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=vkeys, threshold=2).witnesses) == 2
    with pytest.raises(VerificationError, match="2 of the required 3"):
        verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=vkeys, threshold=3)
    with pytest.raises(VerificationError, match="2 of the required 3"):
        verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=vkeys)  # default: all

    # The last checkpoint two witnesses cosigned is the latest one; three cosigned the one before.
    with store.sessions() as session:
        two = latest_witnessed_checkpoint(session, parse_witness_policy(vkeys, 2))  # type: ignore[arg-type]
        three = latest_witnessed_checkpoint(session, parse_witness_policy(vkeys, 3))  # type: ignore[arg-type]
    assert two is not None and two[0] == result.tree_size
    assert three is not None and three[0] == result.tree_size - 3
    assert len(verify_cosignatures(three[1], [w.cosigner.verifier() for w in ws], 3)) == 3


@pytest.mark.parametrize("forged_size", [2, 8, 20], ids=["inside", "same-size", "beyond"])
def test_a_split_view_witness_refuses_without_blocking_the_others(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle, forged_size: int
) -> None:
    store = sqlite_store
    ws = witnesses.start(3)
    _post_forged_checkpoint(store, ws[2], forged_size)
    appender.batches([3, 4])

    result = _round(store, ws)
    assert result.tree_size == 8
    assert _statuses(result) == ["cosigned", "cosigned", "refused"]
    detail = result.outcomes[2].detail
    expected = {2: "consistency proof does not verify", 8: "split view", 20: "fork or a rollback"}[forged_size]
    assert expected in detail
    assert [r[1] for r in _rows(store)] == [ws[0].name, ws[1].name]
    # The refusing witness kept what it saw (evidence of the split view).
    assert ws[2].store.load()[store.log.origin].size == forged_size


# ------------------------------------------------------------------------------ replies that do not verify


def _tampering(mutate: Callable[[bytes], bytes]) -> Callable[[Wsgi], Wsgi]:
    """A middleware that passes requests to the real witness and rewrites its 200 replies."""

    def wrap(app: Wsgi) -> Wsgi:
        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            captured: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
                captured.update(status=status, headers=headers)
                return lambda _data: None

            result = app(environ, capture)
            try:
                body = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
            if captured["status"].startswith("200"):
                body = mutate(body)
            headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
            start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
            return iter([body])

        return middleware

    return wrap


def _flip_signature_bit(body: bytes) -> bytes:
    prefix, encoded = body.decode().rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n".encode()


def _stranger(body: bytes) -> bytes:
    other = Ed25519CosignatureSigner("stranger.example", b"\x07" * 32)
    sig = other.sign("not this checkpoint\n", timestamp=1)
    return f"\u2014 {sig.name} {base64.b64encode(sig.key_id.to_bytes(4, 'big') + sig.signature).decode()}\n".encode()


MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "bad-signature": _flip_signature_bit,
    "garbage": lambda _body: b"this is not a signature line\n",
    "empty": lambda _body: b"",
    "not-utf8": lambda _body: b"\xff\xfe\n",
    "unknown-key-only": _stranger,
    "truncated": lambda body: body[: len(body) // 2],
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_cosignatures_that_do_not_verify_are_not_stored(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle, mutation: str
) -> None:
    store = sqlite_store
    (honest,) = witnesses.start(1)
    (tampered,) = witnesses.start(1, wrap=_tampering(MUTATIONS[mutation]))
    appender.batches([3])
    result = _round(store, [honest, tampered])
    assert _statuses(result) == ["cosigned", "invalid"]
    assert [r[1] for r in _rows(store)] == [honest.name]
    _, _, served = _latest(store)
    assert tampered.name not in served


def test_a_replayed_cosignature_of_an_older_checkpoint_is_not_stored(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle
) -> None:
    store = sqlite_store
    first: list[bytes] = []

    def replay(body: bytes) -> bytes:
        first.append(body)
        return first[0]

    (w,) = witnesses.start(1, wrap=_tampering(replay))
    appender.batches([2])
    assert _statuses(_round(store, [w])) == ["cosigned"]
    appender.batches([2])
    result = _round(store, [w])
    assert _statuses(result) == ["invalid"]
    assert "invalid signature" in result.outcomes[0].detail
    assert [r[0] for r in _rows(store)] == [result.tree_size - 2]


def test_a_witness_configured_with_another_key_is_not_believed(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle
) -> None:
    store = sqlite_store
    a, b = witnesses.start(2)
    appender.batches([2])
    result = _round(store, [WitnessEndpoint(b.cosigner.verifier(), a.url)])
    assert _statuses(result) == ["invalid"]
    assert "no verifiable signatures" in result.outcomes[0].detail
    assert _rows(store) == []


# ------------------------------------------------------------------------------ protocol edges


class FakeWitness:
    """A server that answers every request with one fixed reply (for protocol edge cases)."""

    def __init__(self, status: str, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.requests: list[bytes] = []

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            self.requests.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
            return [body]

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        import threading  # noqa: PLC0415

        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


EDGES = {
    "409-wrong-content-type": (("409 Conflict", b"3\n", "text/plain"), "without a text/x.tlog.size body"),
    "409-not-a-size": (("409 Conflict", b"03\n", "text/x.tlog.size"), "without a text/x.tlog.size body"),
    "409-larger": (("409 Conflict", b"99\n", "text/x.tlog.size"), "fork or a rollback"),
    "403": (("403 Forbidden", b"no trusted signature\n", "text/plain"), "HTTP 403: no trusted signature"),
    "500": (("500 Internal Server Error", b"boom\n", "text/plain"), "HTTP 500"),
    "redirect": (("302 Found", b"", "text/plain"), "HTTP 302"),
}


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_refusals_and_odd_replies_are_outcomes(sqlite_store: StoreHandle, appender: Appender, edge: str) -> None:
    store = sqlite_store
    (status, body, content_type), expected = EDGES[edge]
    headers = [("Location", "http://127.0.0.1:9/elsewhere")] if edge == "redirect" else []
    fake = FakeWitness(status, body, content_type, headers)
    try:
        appender.batches([2])
        endpoint = WitnessEndpoint(Ed25519CosignatureSigner("fake.example", b"\x01" * 32).verifier(), fake.url)
        result = _round(store, [endpoint])
    finally:
        fake.close()
    assert _statuses(result) == ["refused"]
    assert expected in result.outcomes[0].detail
    assert len(fake.requests) == 1  # a 409 that names no usable size is not retried
    assert fake.requests[0].startswith(b"old 0\n\n" + store.log.origin.encode())
    assert _rows(store) == []


def test_a_409_with_the_witness_size_is_retried_once_from_that_size(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle
) -> None:
    store = sqlite_store
    (w,) = witnesses.start(1)
    appender.batches([2])
    assert _statuses(_round(store, [w])) == ["cosigned"]  # the witness is at 3
    # The ledger forgets nothing, so make it ask a witness that knows more than the table says:
    # a second witness key that shares the first one's state (as a restarted witness would).
    again = RunningWitness("witness0.example", store.log.vkey, w.store.path)
    try:
        appender.batches([4])
        result = _round(store, [again])
        assert _statuses(result) == ["cosigned"]
        assert again.store.load()[store.log.origin].size == result.tree_size
    finally:
        again.stop()


def test_a_silent_witness_times_out(sqlite_store: StoreHandle, appender: Appender) -> None:
    store = sqlite_store
    appender.batches([1])
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        endpoint = WitnessEndpoint(Ed25519CosignatureSigner("silent.example", b"\x02" * 32).verifier(), f"http://127.0.0.1:{port}")
        result = _round(store, [endpoint], timeout=0.3)
    assert _statuses(result) == ["unreachable"]


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_witness_that_trickles_its_reply_is_cut_off_at_the_timeout(
    witnesses: Witnesses, sqlite_store: StoreHandle, appender: Appender, where: str
) -> None:
    """Each read has the timeout, but a reply dripped a byte at a time never trips it: the whole
    request is bounded instead. Its socket is shut at the timeout (the dripping witness sees its
    connection end: no asking thread is left reading), and the honest witness beside it cosigns."""
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    store = sqlite_store
    (honest,) = witnesses.start(1)
    appender.batches([2])
    stop = threading.Event()
    cut_off = threading.Event()
    with socket.socket() as dripping:
        dripping.bind(("127.0.0.1", 0))
        dripping.listen(4)

        def drip() -> None:
            conn, _ = dripping.accept()
            with conn:
                conn.recv(65536)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n"
                if where == "body":
                    conn.sendall(head + b"\r\n")
                else:
                    conn.sendall(head + b"X-Slow: ")
                while not stop.is_set():
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        cut_off.set()
                        return
                    time.sleep(0.05)

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        slow = WitnessEndpoint(Ed25519CosignatureSigner("slow.example", b"\x03" * 32).verifier(),
                               f"http://127.0.0.1:{dripping.getsockname()[1]}")
        try:
            result = _round(store, [honest, slow], timeout=0.5)
            # the ledger's side closed the connection: the witness's next sends fail (a generous
            # bound on a wait that, without the cut, would never end)
            dripper.join(timeout=30)
        finally:
            stop.set()
    by_name = {o.witness.split("+")[0]: o for o in result.outcomes}
    assert by_name[honest.name].status == "cosigned"
    assert by_name["slow.example"].status == "unreachable"
    assert "no complete reply within" in by_name["slow.example"].detail
    assert cut_off.is_set()


def test_http_post_is_bounded_as_a_whole() -> None:
    """A witness that sends its headers one byte at a time, each well inside the timeout, gets
    OSError naming the timeout, not a thread that reads for as long as it drips."""
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    stop = threading.Event()
    with socket.socket() as dripping:
        dripping.bind(("127.0.0.1", 0))
        dripping.listen(1)

        def drip() -> None:
            conn, _ = dripping.accept()
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"x" * 10_000:
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        return
                    time.sleep(0.02)

        threading.Thread(target=drip, daemon=True).start()
        try:
            with pytest.raises(OSError, match="no complete reply within 0.3 s"):
                http_post(f"http://127.0.0.1:{dripping.getsockname()[1]}/add-checkpoint", b"x", 0.3)
        finally:
            stop.set()


def test_an_empty_store_asks_nobody(tmp_path: Any) -> None:
    from ledger.db.engine import make_engine, make_session_factory  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{tmp_path / 'none.db'}")
    try:
        from ledger.db.models import Base  # noqa: PLC0415

        Base.metadata.create_all(engine)
        sessions = make_session_factory(engine)
        log = _log_identity()
        assert request_cosignatures(sessions, log, [], now=NOW) == CosignRound(None)
        with sessions() as session, pytest.raises(NotFoundError, match="no checkpoint"):
            latest_cosigned_note(session)
    finally:
        engine.dispose()


def _log_identity() -> Any:
    from ledger.tlog.note import generate_signer  # noqa: PLC0415
    from ledger.services.log import LogIdentity  # noqa: PLC0415

    return LogIdentity("example.com/log", generate_signer("example.com/log"))


# ------------------------------------------------------------------------------ serving


def test_cosigned_note_without_cosignatures_is_the_note(sqlite_store: StoreHandle, appender: Appender) -> None:
    appender.batches([1])
    size, note, served = _latest(sqlite_store)
    assert served == note
    with sqlite_store.sessions() as session:
        assert latest_witnessed_checkpoint(session, parse_witness_policy([Ed25519CosignatureSigner("w", b"\x03" * 32).vkey])) is None  # type: ignore[arg-type]
    assert size == 2


def test_every_served_form_carries_the_cosignatures(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle
) -> None:
    store = sqlite_store
    ws = witnesses.start(2)
    appender.batches([2])
    _round(store, ws)
    appender.batches([2])  # the latest checkpoint (5) is not cosigned yet; 3 is
    with store.sessions() as session:
        pages = dbstore.list_checkpoints(session)
        notes = cosigned_notes(session, [(c.tree_size, c.note) for c in pages])
        assert notes == [cosigned_note(session, c.tree_size, c.note) for c in pages]
        assert [n.count("\u2014 ") for n in notes] == [1, 1, 3, 1]  # sizes 0, 1, 3, 5
        latest = dbstore.latest_checkpoint(session)
        assert latest is not None
        assert latest_cosigned_note(session) == latest.note
        with pytest.raises(ValueError, match="another size"):
            cosigned_note(session, 3, latest.note)
    _round(store, ws)
    with store.sessions() as session:
        served = latest_cosigned_note(session)
    assert sorted(verify_cosignatures(served, [w.cosigner.verifier() for w in ws], 2)) == [w.name for w in ws]


# ------------------------------------------------------------------------------ the loop


def test_the_loop_cosigns_when_told_and_survives_a_witness_down(
    witnesses: Witnesses, appender: Appender, sqlite_store: StoreHandle
) -> None:
    store = sqlite_store
    ws = witnesses.start(2)
    loop = CosignLoop(store.sessions, store.log, [w.endpoint for w in ws], interval=3600, timeout=5)
    loop.start()
    try:
        appender.batches([2])
        loop.notify(3)
        assert loop.wait_for(3, timeout=60)
        assert len(_rows(store, 3)) == 2
        ws[1].stop()
        appender.batches([3])
        loop.notify(6)
        assert loop.wait_for(6, timeout=60)
        assert loop.last_round is not None
        assert _statuses(loop.last_round) == ["cosigned", "unreachable"]
        assert [r[1] for r in _rows(store, 6)] == [ws[0].name]
    finally:
        loop.stop()
    rounds = loop.rounds
    loop.notify()  # after stop: no new thread, no new round
    assert loop.rounds == rounds


def test_the_loop_needs_witnesses(sqlite_store: StoreHandle) -> None:
    with pytest.raises(ValueError, match="at least one witness"):
        CosignLoop(sqlite_store.sessions, sqlite_store.log, [])


# ------------------------------------------------------------------------------ the table


def test_the_cosignature_table_is_append_only(store: StoreHandle) -> None:
    with store.sessions() as session, session.begin():
        session.add(CheckpointCosignature(tree_size=0, witness="w.example", key_id="0badc0de", line="\u2014 w.example AAAA", received_at=NOW))
    for statement in (
        "UPDATE checkpoint_cosignatures SET line = 'x'",
        "UPDATE checkpoint_cosignatures SET tree_size = 1",
        "DELETE FROM checkpoint_cosignatures",
    ):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    if store.backend == "postgres":
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text("TRUNCATE checkpoint_cosignatures"))
    with store.sessions() as session:
        assert session.execute(select(CheckpointCosignature.line)).scalars().all() == ["\u2014 w.example AAAA"]


def test_a_cosignature_needs_a_checkpoint(sqlite_store: StoreHandle) -> None:
    with pytest.raises(DBAPIError), sqlite_store.sessions() as session, session.begin():
        session.add(CheckpointCosignature(tree_size=12345, witness="w", key_id="00000000", line="x", received_at=NOW))


def test_the_migration_matches_the_model(sqlite_store: StoreHandle) -> None:
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.migration import MigrationContext  # noqa: PLC0415

    from ledger.db.models import Base  # noqa: PLC0415

    with sqlite_store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if "checkpoint_cosignatures" in repr(d)] == []


# ------------------------------------------------------------------------------ configuration


def _vkey(name: str, seed: int) -> str:
    return Ed25519CosignatureSigner(name, bytes([seed]) * 32).vkey


def test_witness_urls_parse() -> None:
    a, b = _vkey("a.example", 1), _vkey("b.example", 2)
    ws = parse_witness_urls(f"  {a}=https://a.example/witness/  {b}=http://127.0.0.1:8001 ")
    assert [(w.name, w.url, w.add_checkpoint_url) for w in ws] == [
        ("a.example", "https://a.example/witness", "https://a.example/witness/add-checkpoint"),
        ("b.example", "http://127.0.0.1:8001", "http://127.0.0.1:8001/add-checkpoint"),
    ]
    assert parse_witness_urls("") == []
    config = witness_config_from_env({"PROVLEDGER_WITNESS_URLS": f"{a}=https://a {b}=https://b", "PROVLEDGER_WITNESS_THRESHOLD": "1"})
    assert config is not None and config.threshold == 1 and len(config.witnesses) == 2
    config = witness_config_from_env({"PROVLEDGER_WITNESS_URLS": f"{a}=https://a {b}=https://b"})
    assert config is not None and config.threshold == 2  # default: all of them
    assert witness_config_from_env({}) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("just-a-word", "is not VKEY=URL"),
        ("{a}", "is not VKEY=URL"),
        ("{a}=ftp://a.example", "is not VKEY=URL"),
        ("{a}=https:///witness", "host"),
        ("{a}=https://a.example/?x=1", "query"),
        ("{a}=https://user:pw@a.example", "credentials"),
        ("not+a+vkey=https://a.example", "key id"),
        ("{a}=https://a {a}=https://b", "configured twice"),
        ("{ecdsa}=https://a", "not a cosignature/v1"),
    ],
)
def test_bad_witness_urls_are_refused(value: str, message: str) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    from ledger.tlog.note import ECDSAVerifier  # noqa: PLC0415

    spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    filled = value.format(a=_vkey("a.example", 1), ecdsa=ECDSAVerifier("e.example", spki).vkey)
    with pytest.raises(MalformedError, match=message):
        parse_witness_urls(filled)
    with pytest.raises(ConfigurationError, match="PROVLEDGER_WITNESS_URLS"):
        witness_config_from_env({"PROVLEDGER_WITNESS_URLS": filled})


@pytest.mark.parametrize("threshold", ["0", "3", "two", "-1"])
def test_a_bad_threshold_is_refused(threshold: str) -> None:
    urls = f"{_vkey('a.example', 1)}=https://a {_vkey('b.example', 2)}=https://b"
    with pytest.raises(ConfigurationError, match="threshold"):
        witness_config_from_env({"PROVLEDGER_WITNESS_URLS": urls, "PROVLEDGER_WITNESS_THRESHOLD": threshold})
    with pytest.raises(ConfigurationError, match="needs witness keys"):
        witness_config_from_env({"PROVLEDGER_WITNESS_THRESHOLD": "1"})
