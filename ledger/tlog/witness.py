"""A transparency-log witness (c2sp.org/tlog-witness ``add-checkpoint``, c2sp.org/tlog-cosignature).

A witness remembers, per log origin, the latest checkpoint it cosigned, and cosigns a new one
only if it is signed by the log and provably extends that one. Two checkpoints that cannot both
be true (a split view) are refused, so a log that shows different trees to different people is
caught by every witness that sees both.

The request body is::

    old <size>\\n
    <base64 hash>\\n   (0..63 lines: RFC 6962 consistency proof from the old size)
    \\n
    <signed checkpoint>

Checks, in the spec's order, and the status each failure gets:

1. the body parses (400; 413 over ``MAX_REQUEST_BYTES``);
2. the checkpoint's origin is a configured log (404);
3. a configured key of that log verifies it and no configured key's signature is bad (403);
4. old size <= checkpoint size (400);
5. old size == the size this witness last cosigned for the origin, 0 if none (409, with body
   ``<size>\\n`` and content type ``text/x.tlog.size``);
6. equal sizes: the roots are equal (409, the split view of one size) and the proof is empty
   (422); a size-0 checkpoint has root SHA-256("") (422);
7. otherwise the consistency proof leads from the stored root to the new root (422; from size 0
   it must be empty).

Then the new state is persisted (atomically, before replying) and the reply is the cosignature
line. Steps 5-7 and the write run under one lock, so two concurrent requests cannot roll the
state back (the race the spec describes).

:class:`FileStateStore` keeps the state in one JSON file written via a temporary file, fsync and
rename, under an exclusive ``flock`` (safe across threads and processes). The state machine
itself (:func:`decide`) is pure.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, parse_checkpoint_text
from ledger.errors import (
    ConfigurationError,
    MalformedError,
    TooLargeError,
    VerificationError,
)
from ledger.tlog.hashing import EMPTY_ROOT, HASH_SIZE
from ledger.untrusted.json import parse_json
from ledger.tlog.note import (
    MAX_NOTE_BYTES,
    Ed25519CosignatureSigner,
    Signature,
    Verifier,
    b64decode_canonical,
    parse_note,
    parse_skey,
    parse_vkey,
    verify_note_result,
)

__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpointRequest",
    "FileStateStore",
    "LogState",
    "MemoryStateStore",
    "StateStore",
    "Witness",
    "WitnessResponse",
    "decide",
    "format_add_checkpoint",
    "format_cosignature_lines",
    "load_cosigner",
    "parse_add_checkpoint",
]

#: C2SP: a client MUST NOT send more than 63 consistency proof lines.
MAX_PROOF_LINES = 63
#: The old-size line, 63 proof lines and a checkpoint note at its own cap.
MAX_REQUEST_BYTES = 32 + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_BYTES
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")
_MAX_SIZE = (1 << 64) - 1
_STATE_VERSION = 1


# --------------------------------------------------------------------------------------------
# The request


@dataclass(frozen=True)
class AddCheckpointRequest:
    old_size: int
    proof: tuple[bytes, ...]
    #: the signed checkpoint note, verbatim
    checkpoint: bytes


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an ``add-checkpoint`` body (the checkpoint note is parsed, not verified).

    Raises:
        TooLargeError: the body is over ``MAX_REQUEST_BYTES``.
        MalformedError: anything else that is not a well-formed request.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise TooLargeError(
            f"the request is {len(body)} bytes, over the limit of {MAX_REQUEST_BYTES}"
        )
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("the request is not valid UTF-8") from exc
    end = text.find("\n")
    if end < 0:
        raise MalformedError("the request has no old size line")
    match = _OLD_LINE.fullmatch(text[:end])
    if match is None:
        raise MalformedError(f"the first line {text[: min(end, 40)]!r} is not 'old <decimal>'")
    old_size = int(match.group(1))
    if old_size > _MAX_SIZE:
        raise MalformedError("the old size does not fit in 64 bits")
    pos = end + 1
    proof: list[bytes] = []
    while True:
        end = text.find("\n", pos)
        if end < 0:
            raise MalformedError("the request has no blank line before the checkpoint")
        line = text[pos:end]
        pos = end + 1
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise MalformedError(
                f"the request has more than {MAX_PROOF_LINES} consistency proof lines"
            )
        value = b64decode_canonical(line, f"consistency proof line {len(proof) + 1}")
        if len(value) != HASH_SIZE:
            raise MalformedError(
                f"consistency proof line {len(proof) + 1} is {len(value)} bytes, not 32"
            )
        proof.append(value)
    checkpoint = text[pos:].encode("utf-8")
    note = parse_note(checkpoint)
    parse_checkpoint_text(note.text)
    return AddCheckpointRequest(old_size, tuple(proof), checkpoint)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint: bytes | str) -> bytes:
    """The ``add-checkpoint`` body a log sends to a witness."""
    if not 0 <= old_size <= _MAX_SIZE:
        raise ValueError(f"old size {old_size} is not a uint64")
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"a witness accepts at most {MAX_PROOF_LINES} proof lines")
    lines = [f"old {old_size}\n"]
    for h in proof:
        if len(h) != HASH_SIZE:
            raise ValueError("a consistency proof hash must be 32 bytes")
        lines.append(base64.b64encode(h).decode("ascii") + "\n")
    lines.append("\n")
    note = checkpoint.encode("utf-8") if isinstance(checkpoint, str) else bytes(checkpoint)
    return "".join(lines).encode("ascii") + note


def format_cosignature_lines(signatures: Sequence[Signature]) -> bytes:
    """Signature lines ``— <name> <base64(key id || signature)>\\n`` (the 200 reply body)."""
    return "".join(
        f"\u2014 {sig.name} "
        + base64.b64encode(sig.key_id.to_bytes(4, "big") + sig.signature).decode("ascii")
        + "\n"
        for sig in signatures
    ).encode("utf-8")


# --------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint a witness cosigned for one origin."""

    size: int
    root: bytes
    #: the checkpoint note as received (evidence, should the log ever contradict it)
    checkpoint: str = ""


_NEVER_SEEN = LogState(0, EMPTY_ROOT)


class StateStore(Protocol):
    def transaction(self) -> contextlib.AbstractContextManager[dict[str, LogState]]:
        """Hold the witness's lock; yield the current state; persist it if it was changed."""
        ...


def _encode_state(states: Mapping[str, LogState]) -> bytes:
    doc = {
        "version": _STATE_VERSION,
        "logs": {
            origin: {
                "size": s.size,
                "root": base64.b64encode(s.root).decode("ascii"),
                "checkpoint": s.checkpoint,
            }
            for origin, s in sorted(states.items())
        },
    }
    return json.dumps(doc, indent=2).encode("utf-8") + b"\n"


def _decode_state(data: bytes, where: str) -> dict[str, LogState]:
    try:
        doc = parse_json(data, what="the state file")
        if doc.get("version") != _STATE_VERSION or not isinstance(doc.get("logs"), dict):
            raise ValueError("not a version-1 witness state")
        states = {}
        for origin, item in doc["logs"].items():
            size, root = item["size"], base64.b64decode(item["root"], validate=True)
            if type(size) is not int or not 0 <= size <= _MAX_SIZE or len(root) != HASH_SIZE:
                raise ValueError(f"bad size or root for {origin!r}")
            if not isinstance(item.get("checkpoint", ""), str):
                raise TypeError(f"bad checkpoint for {origin!r}")
            states[origin] = LogState(size, root, item.get("checkpoint", ""))
    except (MalformedError, ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        # Fail closed: a witness that forgot what it cosigned could be rolled back.
        raise ConfigurationError(f"the witness state {where} is damaged: {exc}") from exc
    return states


class MemoryStateStore:
    """Witness state in memory (tests, and callers that persist elsewhere)."""

    def __init__(self, states: Mapping[str, LogState] | None = None) -> None:
        self.states = dict(states or {})
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, LogState]]:
        with self._lock:
            working = dict(self.states)
            yield working
            self.states = working


class FileStateStore:
    """Witness state in one JSON file, rewritten atomically (temp file, fsync, rename, fsync dir).

    Every transaction re-reads the file under an exclusive ``flock`` on ``<path>.lock``, so
    several threads or processes serving one witness serialise correctly.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, LogState]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the witness state {self.path}: {exc.strerror}"
            ) from exc
        return _decode_state(data, str(self.path))

    def save(self, states: Mapping[str, LogState]) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_encode_state(states))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, LogState]]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(lock_path, "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                states = self.load()
                before = dict(states)
                yield states
                if states != before:
                    self.save(states)
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# The state machine


@dataclass(frozen=True)
class WitnessResponse:
    status: int
    body: bytes
    content_type: str = TEXT_CONTENT_TYPE

    @property
    def ok(self) -> bool:
        return self.status == 200  # noqa: PLR2004


def _reply(status: int, message: str) -> WitnessResponse:
    return WitnessResponse(status, (message + "\n").encode("utf-8"))


def _conflict(size: int) -> WitnessResponse:
    return WitnessResponse(409, f"{size}\n".encode("ascii"), SIZE_CONTENT_TYPE)


def decide(
    request: AddCheckpointRequest,
    checkpoint: Checkpoint,
    stored: LogState | None,
) -> tuple[WitnessResponse | None, LogState | None]:
    """Steps 4-7 for a checkpoint whose log signature has been verified.

    Returns ``(refusal, None)`` or ``(None, new_state)``: the caller persists the new state and
    only then cosigns.
    """
    stored = stored or _NEVER_SEEN
    old, new = request.old_size, checkpoint.size
    # (4) The old size cannot be past the checkpoint.
    if old > new:
        return _reply(400, f"old size {old} is larger than the checkpoint size {new}"), None
    # (5) The client must build on what this witness last cosigned.
    if old != stored.size:
        return _conflict(stored.size), None
    # (6) Same size: the same tree, or a split view.
    if new == 0 and checkpoint.root != EMPTY_ROOT:
        return _reply(422, 'the root of an empty tree must be SHA-256("")'), None
    if old == new:
        if request.proof:
            return _reply(422, "a consistency proof between equal sizes must be empty"), None
        if checkpoint.root != stored.root:
            return _conflict(stored.size), None
    # (7) A larger tree must provably extend the stored one (size 0: empty proof only).
    else:
        try:
            merkle.verify_consistency(old, new, list(request.proof), stored.root, checkpoint.root)
        except VerificationError as exc:
            return _reply(422, f"the consistency proof does not verify: {exc}"), None
    return None, LogState(new, checkpoint.root, request.checkpoint.decode("utf-8"))


class Witness:
    """A witness: a cosigning key, the logs it watches (origin → verifiers) and its state."""

    def __init__(
        self,
        cosigner: Ed25519CosignatureSigner,
        logs: Mapping[str, Sequence[Verifier]],
        store: StateStore,
    ) -> None:
        if not logs:
            raise ConfigurationError("a witness needs at least one log key")
        self.cosigner = cosigner
        self.logs = {origin: tuple(verifiers) for origin, verifiers in logs.items()}
        self.store = store

    @classmethod
    def from_vkeys(
        cls, cosigner: Ed25519CosignatureSigner, log_vkeys: Sequence[str], store: StateStore
    ) -> Witness:
        """Logs from their verifier keys; each log's origin is its key's name (C2SP SHOULD)."""
        logs: dict[str, list[Verifier]] = {}
        for vkey in log_vkeys:
            verifier = parse_vkey(vkey)
            logs.setdefault(verifier.name, []).append(verifier)
        return cls(cosigner, logs, store)

    @property
    def vkey(self) -> str:
        return self.cosigner.vkey

    def add_checkpoint(self, body: bytes, *, now: int) -> WitnessResponse:
        """Handle one ``add-checkpoint`` request at time ``now`` (Unix seconds)."""
        # (1) Parse.
        try:
            request = parse_add_checkpoint(body)
        except TooLargeError as exc:
            return _reply(413, exc.diagnostics())
        except MalformedError as exc:
            return _reply(400, exc.diagnostics())
        note = parse_note(request.checkpoint)
        checkpoint = parse_checkpoint_text(note.text)
        # (2) A log this witness watches.
        verifiers = self.logs.get(checkpoint.origin)
        if verifiers is None:
            return _reply(404, f"unknown log origin {checkpoint.origin!r}")
        # (3) Signed by it (unknown keys ignored; a bad signature by a known key refuses).
        result = verify_note_result(request.checkpoint, verifiers)
        if not result.ok:
            try:
                result.raise_for_failure()
            except VerificationError as exc:
                return _reply(403, exc.diagnostics())
        # (4)-(7) under the lock, then persist before replying.
        with self.store.transaction() as states:
            refusal, new_state = decide(request, checkpoint, states.get(checkpoint.origin))
            if refusal is not None:
                return refusal
            assert new_state is not None
            states[checkpoint.origin] = new_state
        cosignature = self.cosigner.sign(note.text, timestamp=now)
        return WitnessResponse(200, format_cosignature_lines([cosignature]))


def load_cosigner(path: str | os.PathLike[str]) -> Ed25519CosignatureSigner:
    """The witness's cosigning key from its ``PRIVATE+KEY+<name>+…`` file (``witness keygen``).

    The file holds an Ed25519 signer key in the Go note format; the witness cosigns with the same
    seed as a cosignature/v1 (type 0x04) key, whose vkey it prints.
    """
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigurationError(
            f"the witness key {path} does not exist: run `provledger witness keygen`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"the witness key {path} cannot be read") from exc
    try:
        signer = parse_skey(text)
    except MalformedError as exc:
        raise ConfigurationError(f"the witness key {path} is not a valid signer key") from exc
    seed = base64.b64decode(text.split("+", 4)[4])[
        1:
    ]  # PRIVATE+KEY+<name>+<id>+<key>; names have no "+"
    return Ed25519CosignatureSigner(signer.name, seed)
