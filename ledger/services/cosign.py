"""Collect witness cosignatures of the log's checkpoints (c2sp.org/tlog-witness, tlog-cosignature).

The ledger asks each configured witness to cosign its latest checkpoint: it POSTs
``<url>/add-checkpoint`` with a consistency proof from the size the witness last cosigned, checks
every returned cosignature line against that witness's key over the checkpoint's text, and keeps
the lines that verify in the append-only ``checkpoint_cosignatures`` table. Wherever the ledger
serves a checkpoint (the API, the tiles, receipts) it merges them in (:func:`cosigned_note`), so
``verify-receipt --witness … --threshold K`` can apply a k-of-n policy offline.

Configured from the environment::

    PROVLEDGER_WITNESS_URLS       space-separated VKEY=URL pairs: a witness's cosignature verifier
                                  key and its base URL (the request goes to URL/add-checkpoint;
                                  the witness knows this log by the log's origin)
    PROVLEDGER_WITNESS_THRESHOLD  how many distinct witnesses must cosign (default: all of them)

Witnesses are never on the append path: a witness that is down, slow, refuses, or replies with
something that does not verify is logged and skipped, and asked again on the next round. No
database transaction is held while a witness is being asked.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ledger import merkle
from ledger.tlog.checkpoint import open_checkpoint, parse_checkpoint_text
from ledger.db import store
from ledger.db.models import CheckpointCosignature
from ledger.errors import ConfigurationError, LedgerError, MalformedError, NotFoundError
from ledger.tlog.note import (
    CosignatureV1Verifier,
    Ed25519Verifier,
    Signature,
    Verifier,
    append_signatures,
    parse_note,
    parse_vkey,
    verify_note_result,
)
from ledger.services.log import LogIdentity
from ledger.services.witness_http import MAX_REPLY_BYTES, HttpReply, http_post
from ledger.tlog.witness import MAX_PROOF_LINES, SIZE_CONTENT_TYPE, format_add_checkpoint, format_cosignature_lines
from ledger.tlog.witness_policy import ENV_THRESHOLD, WitnessPolicy, parse_witness_policy

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "ENV_WITNESS_URLS",
    "MAX_REPLY_BYTES",
    "CosignLoop",
    "CosignOutcome",
    "CosignRound",
    "HttpReply",
    "WitnessConfig",
    "WitnessEndpoint",
    "cosigned_note",
    "cosigned_notes",
    "http_post",
    "latest_cosigned_note",
    "latest_witnessed_checkpoint",
    "parse_witness_urls",
    "request_cosignatures",
    "stored_cosignatures",
    "witness_config_from_env",
]

_logger = logging.getLogger(__name__)

ENV_WITNESS_URLS = "PROVLEDGER_WITNESS_URLS"
#: a name operators may expect (witness keys alone); refused at start rather than ignored
ENV_WITNESSES_UNREAD = "PROVLEDGER_WITNESSES"
#: Seconds a witness gets per request (connect, and then the whole reply).
DEFAULT_TIMEOUT = 5.0
#: The loop asks again at least this often (a witness that was down catches up).
DEFAULT_INTERVAL = 30.0
#: How many witnesses are asked at once.
MAX_PARALLEL = 8
#: A round waits at most this many timeouts for its witnesses (two requests each, at most).
ROUND_TIMEOUTS = 3

#: ``VKEY=URL``: the URL starts at the first ``=http://`` or ``=https://`` (base64 may end in ``=``).
_PAIR = re.compile(r"(?P<vkey>\S+?)=(?P<url>https?://\S+)")
_SIZE_BODY = re.compile(rb"(0|[1-9][0-9]{0,19})\n")
_MAX_SIZE = (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the ledger asks: its cosignature key and its base URL."""

    verifier: Verifier
    url: str

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> str:
        return f"{self.verifier.key_id:08x}"

    @property
    def label(self) -> str:
        return f"{self.verifier.name}+{self.key_id}"

    @property
    def add_checkpoint_url(self) -> str:
        return self.url + "/add-checkpoint"


@dataclass(frozen=True)
class WitnessConfig:
    witnesses: tuple[WitnessEndpoint, ...]
    policy: WitnessPolicy

    @property
    def threshold(self) -> int:
        return self.policy.threshold


def _parse_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedError(f"witness URL {url[:80]!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise MalformedError(f"witness URL {url[:80]!r} must not carry a query, fragment or credentials")
    return url.rstrip("/")


def parse_witness_urls(value: str) -> list[WitnessEndpoint]:
    """Witnesses from space-separated ``VKEY=URL`` pairs (``PROVLEDGER_WITNESS_URLS``).

    Raises:
        MalformedError: a pair does not parse, a key is not a cosignature/v1 (0x04) or Ed25519
            (0x01) key, a URL is not http(s), or a key is named twice.
    """
    witnesses: list[WitnessEndpoint] = []
    seen: set[tuple[str, int]] = set()
    for item in value.split():
        match = _PAIR.fullmatch(item)
        if match is None:
            raise MalformedError(f"witness {item[:80]!r} is not VKEY=URL (URL starting http:// or https://)")
        verifier = parse_vkey(match["vkey"])
        if not isinstance(verifier, CosignatureV1Verifier | Ed25519Verifier):
            raise MalformedError(f"witness key {verifier.name} is not a cosignature/v1 (0x04) or Ed25519 (0x01) key")
        if (verifier.name, verifier.key_id) in seen:
            raise MalformedError(f"witness key {verifier.name}+{verifier.key_id:08x} is configured twice")
        seen.add((verifier.name, verifier.key_id))
        witnesses.append(WitnessEndpoint(verifier, _parse_url(match["url"])))
    return witnesses


def witness_config_from_env(environ: Mapping[str, str] | None = None) -> WitnessConfig | None:
    """The witnesses of ``PROVLEDGER_WITNESS_URLS`` and their threshold (None when unset).

    Raises:
        ConfigurationError: the variables are set but invalid (the ledger must not start).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_WITNESSES_UNREAD, "").strip():
        # keys without URLs would be a policy nobody is asked to meet: fail closed, naming the variable
        raise ConfigurationError(
            f"{ENV_WITNESSES_UNREAD} is not read: the ledger's witnesses are {ENV_WITNESS_URLS}='VKEY=URL …' "
            f"(their keys, and where the ledger asks them to cosign) with {ENV_THRESHOLD}; unset {ENV_WITNESSES_UNREAD}"
        )
    try:
        witnesses = parse_witness_urls(env.get(ENV_WITNESS_URLS, ""))
        policy = parse_witness_policy([w.verifier.vkey for w in witnesses], env.get(ENV_THRESHOLD))  # type: ignore[attr-defined]
    except MalformedError as exc:
        raise ConfigurationError(f"{ENV_WITNESS_URLS}/{ENV_THRESHOLD}: {exc.diagnostics()}") from exc
    if policy is None:
        return None
    return WitnessConfig(tuple(witnesses), policy)


Post = Callable[[str, bytes, float], HttpReply]


# --------------------------------------------------------------------------------------------
# Asking the witnesses


@dataclass(frozen=True)
class CosignOutcome:
    """What one witness did with one checkpoint.

    ``status`` is ``cosigned`` (a new cosignature was stored), ``already`` (one was stored
    before), ``refused`` (the witness said no), ``unreachable`` (no reply), ``invalid`` (a
    reply that is not a cosignature of this checkpoint by the configured key: nothing stored)
    or ``error`` (a bug on our side while asking: logged with its traceback).
    """

    witness: str
    tree_size: int
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("cosigned", "already")


@dataclass(frozen=True)
class CosignRound:
    """One round: the checkpoint asked about (None if the store has none) and each outcome."""

    tree_size: int | None
    outcomes: tuple[CosignOutcome, ...] = ()

    @property
    def cosigned(self) -> list[str]:
        """Labels of the witnesses whose cosignature of this checkpoint is stored."""
        return [o.witness for o in self.outcomes if o.ok]


@dataclass
class _Ask:
    """One witness's part of a round (filled in by its thread)."""

    witness: WitnessEndpoint
    old_size: int
    signatures: tuple[Signature, ...] = ()
    outcome: CosignOutcome | None = None


def _first_line(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip().split("\n", 1)[0][:200]


def _parse_size_reply(reply: HttpReply) -> int | None:
    """The witness's size from a 409 ``text/x.tlog.size`` body, or None if it is not one."""
    if reply.content_type.split(";", 1)[0].strip().lower() != SIZE_CONTENT_TYPE:
        return None
    match = _SIZE_BODY.fullmatch(reply.body)
    if match is None or int(match[1]) > _MAX_SIZE:
        return None
    return int(match[1])


def _verify_reply(text: str, body: bytes, witness: WitnessEndpoint) -> tuple[Signature, ...]:
    """The cosignatures by ``witness``'s key over ``text`` in an add-checkpoint reply.

    Raises:
        MalformedError: the reply is not signature lines.
        SignatureError: the key's line does not verify, or there is none.
    """
    if not body:
        raise MalformedError("the reply is empty")
    try:
        reply = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("the reply is not UTF-8") from exc
    result = verify_note_result(text + "\n" + reply, [witness.verifier])
    result.raise_for_failure()
    return tuple(item.signature for item in result.verified)


def _ask(
    ask: _Ask,
    *,
    note: str,
    text: str,
    tree_size: int,
    proof: Sequence[bytes],
    prove: Callable[[int], list[bytes]],
    post: Post,
    timeout: float,
) -> None:
    witness, old = ask.witness, ask.old_size

    def outcome(status: str, detail: str = "") -> None:
        ask.outcome = CosignOutcome(witness.label, tree_size, status, detail)

    for attempt in (1, 2):
        if len(proof) > MAX_PROOF_LINES:
            outcome("refused", f"the proof from {old} has over {MAX_PROOF_LINES} lines")
            return
        try:
            reply = post(witness.add_checkpoint_url, format_add_checkpoint(old, proof, note), timeout)
        except OSError as exc:  # TimeoutError and ConnectionError are OSErrors
            outcome("unreachable", str(exc) or type(exc).__name__)
            return
        if reply.status != 409:  # noqa: PLR2004
            break
        # (C2SP tlog-witness) 409: the witness holds another size. Prove consistency from it, once.
        size = _parse_size_reply(reply)
        if size is None:
            detail = "HTTP 409 without a text/x.tlog.size body"
        elif size > tree_size:
            detail = (
                f"the witness has cosigned size {size}, larger than this log's {tree_size} "
                "(a fork or a rollback?)"
            )
        elif size == old:
            detail = f"the witness holds a different checkpoint of size {size} (a split view?)"
        elif attempt == 2:  # noqa: PLR2004
            detail = f"the witness's size moved again, to {size}"
        else:
            old, proof = size, prove(size)
            continue
        outcome("refused", detail)
        return
    if reply.status != 200:  # noqa: PLR2004
        outcome("refused", f"HTTP {reply.status}: {_first_line(reply.body)}")
        return
    try:
        ask.signatures = _verify_reply(text, reply.body, witness)
    except LedgerError as exc:
        outcome("invalid", exc.diagnostics())
        return
    outcome("cosigned")


def _consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    # The same stored hashes as receipts.consistency_proof, without importing the receipts
    # module (which serves checkpoints through this one).
    plan = merkle.consistency_proof_plan(old_size, new_size)
    return merkle.proof_from_plan(plan, store.read_nodes(session, merkle.plan_nodes(plan)))


def _last_sizes(session: Session) -> dict[tuple[str, str], int]:
    """(witness, key id) → the largest tree size it cosigned, from the stored cosignatures."""
    c = CheckpointCosignature
    rows = session.execute(select(c.witness, c.key_id, func.max(c.tree_size)).group_by(c.witness, c.key_id))
    return {(w, k): size for w, k, size in rows}


def _insert_cosignatures(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert rows, skipping any (tree_size, witness, key_id) already stored (another process)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(CheckpointCosignature).on_conflict_do_nothing(), rows)


def request_cosignatures(
    session_factory: Callable[[], Session],
    log: LogIdentity,
    witnesses: Sequence[WitnessEndpoint],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    now: int,
    post: Post = http_post,
) -> CosignRound:
    """Ask every witness to cosign the latest checkpoint; store the cosignatures that verify.

    Never raises for a witness's failure (each one is an outcome, logged); database errors
    propagate.
    """
    # (1) The latest checkpoint, checked with the log's own key before it is sent anywhere.
    with session_factory() as session:
        cp = store.latest_checkpoint(session)
        if cp is None:
            return CosignRound(None)
        tree_size, note = cp.tree_size, cp.note
        try:
            open_checkpoint(note, log.verifier, origin=log.origin)
        except LedgerError as exc:
            _logger.error("not sending checkpoint %d to witnesses: it does not verify: %s", tree_size, exc.diagnostics())
            return CosignRound(tree_size)
        last = _last_sizes(session)
        # (2) What each witness still needs, and the proof from the size it last cosigned.
        asks: list[_Ask] = []
        outcomes: dict[str, CosignOutcome] = {}
        proofs: dict[int, list[bytes]] = {}
        for witness in witnesses:
            old = last.get((witness.name, witness.key_id), 0)
            if old == tree_size:
                outcomes[witness.label] = CosignOutcome(witness.label, tree_size, "already")
                continue
            if old not in proofs:
                proofs[old] = _consistency_proof(session, old, tree_size)
            asks.append(_Ask(witness, old))
    text = parse_note(note).text

    def prove(old_size: int) -> list[bytes]:
        with session_factory() as s:
            return _consistency_proof(s, old_size, tree_size)

    # (3) Ask them at once, outside any transaction. ``http_post`` bounds each request as a whole
    #     (a witness that trickles its reply is cut off at the timeout); the round as well lasts at
    #     most ROUND_TIMEOUTS timeouts, whatever ``post`` does, so no witness holds the others'.
    if asks:
        workers = min(MAX_PARALLEL, len(asks))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provledger-cosign")
        try:
            futures = [
                pool.submit(
                    _ask, a, note=note, text=text, tree_size=tree_size, proof=proofs[a.old_size],
                    prove=prove, post=post, timeout=timeout,
                )
                for a in asks
            ]
            wait(futures, timeout=ROUND_TIMEOUTS * timeout)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for n, (a, future) in enumerate(zip(asks, futures, strict=True)):
            if not future.done() or future.cancelled():  # still reading (its thread may finish later,
                # into an ask nobody reads), or never started (more witnesses than threads)
                _logger.warning("witness %s did not answer within the round", a.witness.label)
                asks[n] = _Ask(a.witness, a.old_size, (), CosignOutcome(
                    a.witness.label, tree_size, "unreachable", f"no complete reply within {ROUND_TIMEOUTS * timeout:g} s"))
                continue
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - one witness never stops the others
                _logger.exception("asking witness %s failed", a.witness.label)
                a.signatures = ()
                a.outcome = CosignOutcome(a.witness.label, tree_size, "error", f"{type(exc).__name__}: {exc}")
    # (4) Keep what verified, in one transaction.
    rows = [
        {
            "tree_size": tree_size,
            "witness": sig.name,
            "key_id": f"{sig.key_id:08x}",
            "line": format_cosignature_lines([sig]).decode("utf-8").rstrip("\n"),
            "received_at": now,
        }
        for a in asks
        for sig in a.signatures
    ]
    if rows:
        with session_factory() as session, session.begin():
            _insert_cosignatures(session, rows)
    for a in asks:
        assert a.outcome is not None
        outcomes[a.witness.label] = a.outcome
        if not a.outcome.ok:
            _logger.warning(
                "witness %s did not cosign checkpoint %d: %s: %s",
                a.witness.label, tree_size, a.outcome.status, a.outcome.detail,
            )
    return CosignRound(tree_size, tuple(outcomes[w.label] for w in witnesses))


# --------------------------------------------------------------------------------------------
# Serving checkpoints with their cosignatures


def stored_cosignatures(session: Session, tree_sizes: Sequence[int]) -> dict[int, list[str]]:
    """The stored cosignature lines (no newline) of each checkpoint size, in a fixed order."""
    c = CheckpointCosignature
    lines: dict[int, list[str]] = {}
    wanted = sorted(set(tree_sizes))
    for i in range(0, len(wanted), 1000):
        rows = session.execute(
            select(c.tree_size, c.line)
            .where(c.tree_size.in_(wanted[i : i + 1000]))
            .order_by(c.tree_size, c.witness, c.key_id)
        )
        for size, line in rows:
            lines.setdefault(size, []).append(line)
    return lines


def _merge(tree_size: int, note: str, lines: Sequence[str]) -> str:
    text = parse_note(note).text
    # The lines were verified over the text of checkpoint ``tree_size``; on any other
    # checkpoint they would be bad signatures by known keys, which invalidate the whole note.
    if parse_checkpoint_text(text).size != tree_size:
        raise ValueError(f"the note given for tree size {tree_size} is a checkpoint of another size")
    if not lines:
        return note
    extra = parse_note(text + "\n" + "".join(line + "\n" for line in lines)).signatures
    return append_signatures(note, extra).decode("utf-8")


def cosigned_note(session: Session, tree_size: int, note: str) -> str:
    """``note`` (the checkpoint of ``tree_size``) with its stored cosignature lines appended.

    Returns ``note`` unchanged when no witness has cosigned it. A line already in the note (same
    name and key id) is not added twice.

    Raises:
        ValueError: ``note`` is not the checkpoint of ``tree_size`` (pass one row's two fields).
    """
    return _merge(tree_size, note, stored_cosignatures(session, [tree_size]).get(tree_size, ()))


def cosigned_notes(session: Session, checkpoints: Sequence[tuple[int, str]]) -> list[str]:
    """:func:`cosigned_note` for a page of ``(tree_size, note)`` pairs, in one query."""
    lines = stored_cosignatures(session, [size for size, _ in checkpoints])
    return [_merge(size, note, lines.get(size, ())) for size, note in checkpoints]


def latest_cosigned_note(session: Session) -> str:
    """The latest checkpoint with its cosignatures (``GET /checkpoint``, ``/tlog/checkpoint``).

    Raises:
        NotFoundError: the store has no checkpoint.
    """
    cp = store.latest_checkpoint(session)
    if cp is None:
        raise NotFoundError("the log has no checkpoint yet")
    return cosigned_note(session, cp.tree_size, cp.note)


def latest_witnessed_checkpoint(session: Session, policy: WitnessPolicy) -> tuple[int, str] | None:
    """The largest checkpoint that ``policy.threshold`` distinct policy witnesses cosigned,
    as ``(tree_size, cosigned note)``; None if there is none yet."""
    keys = {(v.name, f"{v.key_id:08x}") for v in policy.verifiers}
    counts: dict[int, set[str]] = {}
    rows = session.execute(
        select(CheckpointCosignature.tree_size, CheckpointCosignature.witness, CheckpointCosignature.key_id)
        .where(CheckpointCosignature.witness.in_(sorted({name for name, _ in keys})))
        .order_by(CheckpointCosignature.tree_size.desc())
    )
    for size, witness, key_id in rows:
        if (witness, key_id) not in keys:
            continue
        names = counts.setdefault(size, set())
        names.add(witness)
        if len(names) >= policy.threshold:
            cp = store.checkpoint_of_size(session, size)
            assert cp is not None  # the foreign key
            return size, cosigned_note(session, size, cp.note)
    return None


# --------------------------------------------------------------------------------------------
# The background loop


class CosignLoop:
    """A thread that asks the witnesses when told of a new checkpoint, and every ``interval`` s.

    ``notify()`` is cheap and never blocks (the sequencer calls it after each commit); several
    notifications during a round make one more round. A round's failures are logged, never
    raised.
    """

    def __init__(
        self,
        sessions: Callable[[], Session],
        log: LogIdentity,
        witnesses: Sequence[WitnessEndpoint],
        *,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        post: Post = http_post,
    ) -> None:
        if not witnesses:
            raise ValueError("a cosign loop needs at least one witness")
        self._sessions = sessions
        self._log = log
        self._witnesses = tuple(witnesses)
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._post = post
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.rounds = 0
        self.last_round: CosignRound | None = None

    def start(self) -> None:
        """Start the thread (idempotent); its first round runs at once."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closed = False
            self._stopping.clear()
            self._wake.set()
            self._thread = threading.Thread(target=self._run, name="provledger-cosign", daemon=True)
            self._thread.start()

    def notify(self, tree_size: int | None = None) -> None:  # noqa: ARG002 - the hook's shape
        """A new checkpoint exists: run a round soon (starting the thread if needed)."""
        self._wake.set()
        if not self._closed and (self._thread is None or not self._thread.is_alive()):
            self.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._closed = True
        if thread is not None:
            self._stopping.set()
            self._wake.set()
            thread.join(timeout=timeout)

    def wait_for(self, tree_size: int, timeout: float) -> bool:
        """Block until a round has asked about a checkpoint of ``tree_size`` or more."""
        def reached() -> bool:
            last = self.last_round
            return last is not None and last.tree_size is not None and last.tree_size >= tree_size

        with self._done:
            return self._done.wait_for(reached, timeout=timeout)

    def run_once(self) -> CosignRound:
        result = request_cosignatures(
            self._sessions, self._log, self._witnesses, timeout=self._timeout, now=int(self._clock()), post=self._post
        )
        with self._done:
            self.rounds += 1
            self.last_round = result
            self._done.notify_all()
        return result

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the loop must outlive a bad round (e.g. the DB restarting)
                _logger.exception("a cosigning round failed")
