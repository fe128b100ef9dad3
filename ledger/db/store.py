"""Queries of the store. Everything here takes a Session and flushes; callers commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.db.engine import begin_write, is_sqlite
from ledger.db.models import (
    ApiToken,
    Checkpoint,
    Entry,
    EntrySubject,
    LogInfo,
    TreeHash,
)
from ledger.errors import ConfigurationError, IntegrityError, NotFoundError
from ledger.tlog.hashing import CHAIN_SEED
from ledger.merkle import CompactRange, NodeId, frontier_nodes

__all__ = [
    "EntryRow",
    "lock_sequencer",
    "read_nodes",
    "stored_position",
]


def stored_position(level: int, index: int) -> int:
    """The row position of interior node (level >= 1, index) in ``tree_hashes``.

    Appending leaf j completes the nodes at levels 1..t (t = trailing one bits of j), in that
    order, after the sum over l >= 1 of (j >> l) nodes completed by the leaves before it.
    """
    assert level >= 1
    j = ((index + 1) << level) - 1
    before, k = 0, j >> 1
    while k:
        before += k
        k >>= 1
    return before + level - 1


def interior_count(size: int) -> int:
    """How many interior nodes a tree of ``size`` leaves has stored."""
    total, k = 0, size >> 1
    while k:
        total += k
        k >>= 1
    return total


# ------------------------------------------------------------------------------ log identity


def log_info(session: Session) -> LogInfo:
    info = session.get(LogInfo, 1)
    if info is None:
        raise ConfigurationError("the store is not initialised: run `provledger init`")
    return info


# ------------------------------------------------------------------------------ the sequencer


def _mark(session: Session) -> str:
    return "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"


def _plain(session: Session, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> list[tuple[Any, ...]]:
    """Run plain SQL on the session's DBAPI connection, in its transaction; the rows it returns.

    The append path's statements (the sequencer runs a dozen per batch, and most batches under
    load are of a few records): SQLAlchemy's per-statement work costs ten times the driver's
    for these. A DBAPI error is wrapped as SQLAlchemy wraps it (``sa_exc.DBAPIError``), so
    callers see one kind of database error either way. ``sql`` is ours, never user input.
    """
    conn = session.connection()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    dbapi_error = conn.dialect.dbapi.Error  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []
    except dbapi_error as exc:
        raise sa_exc.DBAPIError.instance(sql, params, exc, dbapi_error, ismulti=many) from exc
    finally:
        cursor.close()


def _one(session: Session, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    rows = _plain(session, sql, params)
    return rows[0] if rows else None


def lock_sequencer(session: Session) -> int:
    """Take the appenders' lock and return the tree size it guards.

    PostgreSQL: SELECT … FOR UPDATE on the one sequencer row. SQLite: the transaction must begin
    here, with BEGIN IMMEDIATE (``ledger.db.engine.begin_write``), which holds the database's
    write lock.
    """
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        try:
            begin_write(session)
        except RuntimeError:
            # A deferred SQLite transaction that has already read cannot safely become a writer
            # (SQLITE_BUSY_SNAPSHOT): the lock must be the transaction's first statement.
            raise RuntimeError("lock_sequencer must be the first statement of its transaction on SQLite") from None
        row = _one(session, "SELECT size FROM sequencer WHERE id = 1")
    else:
        row = _one(session, "SELECT size FROM sequencer WHERE id = 1 FOR UPDATE")
    size = row[0] if row is not None else None
    if size is None:
        raise ConfigurationError("the store is not initialised: run `provledger init`")
    return size


def advance_sequencer(session: Session, size: int) -> None:
    # The append path's statements are plain SQL: SQLAlchemy's per-statement work would be most
    # of a single-entry batch's cost.
    _plain(session, f"UPDATE sequencer SET size = {_mark(session)} WHERE id = 1", (size,))


# ------------------------------------------------------------------------------ tree hashes


def read_nodes(session: Session, nodes: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """Hashes of the given complete subtrees: leaves from ``entries``, the rest from ``tree_hashes``."""
    wanted = set(nodes)
    leaves = [index for level, index in wanted if level == 0]
    positions = {stored_position(level, index): (level, index) for level, index in wanted if level > 0}
    found: dict[NodeId, bytes] = {}
    # plain SQL (the sequencer reads the right edge whenever another process appended); the
    # lists are of integers, written out as such
    if leaves:
        listed = ",".join(str(int(i)) for i in leaves)
        for idx, h in _plain(session, f"SELECT idx, leaf_hash FROM entries WHERE idx IN ({listed})"):
            found[(0, int(idx))] = bytes(h)
    if positions:
        listed = ",".join(str(int(p)) for p in positions)
        for pos, h in _plain(session, f"SELECT position, hash FROM tree_hashes WHERE position IN ({listed})"):
            found[positions[int(pos)]] = bytes(h)
    missing = wanted - set(found)
    if missing:
        raise IntegrityError(f"the store is missing tree hashes for nodes {sorted(missing)[:5]}")
    return found


def read_frontier(session: Session, size: int) -> CompactRange:
    nodes = frontier_nodes(size)
    hashes = read_nodes(session, nodes)
    return CompactRange(size, [hashes[n] for n in nodes])


def last_entry(session: Session) -> tuple[int, bytes] | None:
    """The index and chain hash of the highest stored entry (None: no entries)."""
    # plain SQL: the sequencer checks the right edge before every batch
    row = _one(session, "SELECT idx, chain_hash FROM entries ORDER BY idx DESC LIMIT 1")
    return (int(row[0]), bytes(row[1])) if row is not None else None


def chain_head(session: Session, size: int) -> bytes:
    if size == 0:
        return CHAIN_SEED
    row = _one(session, f"SELECT chain_hash FROM entries WHERE idx = {int(size) - 1}")
    head = row[0] if row is not None else None
    if head is None:
        raise IntegrityError(f"the store is missing entry {size - 1}", first_bad_index=size - 1)
    return bytes(head)


# ------------------------------------------------------------------------------ entries


@dataclass(frozen=True)
class EntryRow:
    idx: int
    leaf_hash: bytes
    chain_hash: bytes
    data: bytes
    envelope_hash: bytes
    integrated_time: int
    predicate_type: str
    key_id: str
    #: (algorithm, digest, name) of each subject
    subjects: Sequence[tuple[str, str, str]]


def _executemany(session: Session, table: str, columns: Sequence[str], rows: list[tuple[object, ...]]) -> None:
    """The append path's inserts, skipping SQLAlchemy's per-row work: one COPY … FROM STDIN on
    PostgreSQL (one message stream instead of a statement per row; constraints and triggers
    apply as to INSERT, in the caller's transaction), a DBAPI executemany on SQLite."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
        except conn.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
            # the driver's raw error, wrapped as SQLAlchemy wraps it for any statement, so callers
            # (the group commit's isolation of a refused record) see one kind of database error
            raise sa_exc.DBAPIError.instance(statement, None, exc, conn.dialect.dbapi.Error) from exc  # type: ignore[union-attr]
        return
    mark = _mark(session)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    _plain(session, sql, rows, many=True)


def bulk_insert(session: Session, table: str, columns: Sequence[str], rows: list[tuple[object, ...]]) -> None:
    """Insert many rows into one of the append-only tables (``table``/``columns`` are ours)."""
    _executemany(session, table, columns, rows)


_ENTRY_COLUMNS = ("idx", "leaf_hash", "chain_hash", "data", "envelope_hash", "integrated_time", "predicate_type", "key_id")


def insert_entries(session: Session, rows: Sequence[EntryRow], nodes: Sequence[tuple[int, bytes]]) -> None:
    """Insert entries, their subjects and the interior nodes (position, hash) they completed."""
    if not rows:
        return
    _executemany(
        session,
        "entries",
        _ENTRY_COLUMNS,
        [
            (r.idx, r.leaf_hash, r.chain_hash, r.data, r.envelope_hash, r.integrated_time, r.predicate_type, r.key_id)
            for r in rows
        ],
    )
    subjects = [
        (r.idx, i, alg, digest, name) for r in rows for i, (alg, digest, name) in enumerate(r.subjects)
    ]
    if subjects:
        _executemany(session, "entry_subjects", ("entry_idx", "position", "algorithm", "digest", "name"), subjects)
    if nodes:
        _executemany(session, "tree_hashes", ("position", "hash"), list(nodes))


def entries_by_content_hash(session: Session, hashes: Sequence[bytes]) -> dict[bytes, int]:
    """The first entry of each content hash (``entry_contents``: the duplicate identity)."""
    if not hashes:
        return {}
    found: dict[bytes, int] = {}
    mark = _mark(session)
    wanted = list(dict.fromkeys(hashes))
    for i in range(0, len(wanted), 900):  # under SQLite's default variable limit
        chunk = wanted[i : i + 900]
        sql = (
            f"SELECT content_hash, min(entry_idx) FROM entry_contents WHERE content_hash IN ({', '.join([mark] * len(chunk))}) "
            "GROUP BY content_hash"
        )
        found.update((bytes(h), idx) for h, idx in _plain(session, sql, tuple(chunk)))
    return found


def insert_contents(session: Session, rows: Sequence[tuple[int, bytes]]) -> None:
    if rows:
        _executemany(session, "entry_contents", ("entry_idx", "content_hash"), list(rows))


def checkpoint_root(session: Session, tree_size: int) -> bytes | None:
    """The root hash of the checkpoint of ``tree_size`` (plain SQL: the sequencer's edge check)."""
    row = _one(session, f"SELECT root_hash FROM checkpoints WHERE tree_size = {int(tree_size)}")
    return bytes(row[0]) if row is not None and row[0] is not None else None


def chain_head_and_time(session: Session, size: int) -> tuple[bytes, int]:
    """``chain_head`` and ``last_integrated_time`` of a log of ``size`` entries, in one read."""
    if size == 0:
        return CHAIN_SEED, 0
    row = _one(session, f"SELECT chain_hash, integrated_time FROM entries WHERE idx = {int(size) - 1}")
    if row is None:
        raise IntegrityError(f"the store is missing entry {size - 1}", first_bad_index=size - 1)
    return bytes(row[0]), int(row[1])


def last_integrated_time(session: Session, size: int) -> int:
    """The integrated time of entry ``size - 1`` (0 for an empty log)."""
    if size == 0:
        return 0
    t = session.connection().exec_driver_sql(f"SELECT integrated_time FROM entries WHERE idx = {int(size) - 1}").scalar()
    return int(t) if t is not None else 0


def entries_by_envelope_hash(session: Session, hashes: Sequence[bytes]) -> dict[bytes, int]:
    if not hashes:
        return {}
    found: dict[bytes, int] = {}
    mark = _mark(session)
    conn = session.connection()
    wanted = list(dict.fromkeys(hashes))
    for i in range(0, len(wanted), 900):  # under SQLite's default variable limit
        chunk = wanted[i : i + 900]
        sql = f"SELECT envelope_hash, idx FROM entries WHERE envelope_hash IN ({', '.join([mark] * len(chunk))})"
        found.update((bytes(h), idx) for h, idx in conn.exec_driver_sql(sql, tuple(chunk)))
    return found


def get_entry(session: Session, index: int) -> Entry:
    entry = session.get(Entry, index)
    if entry is None:
        raise NotFoundError(f"there is no entry at index {index}")
    return entry


def entry_indexes_by_subject(
    session: Session, algorithm: str, digest: str, *, after: int = -1, limit: int = 100
) -> list[int]:
    """Entry indexes with a subject of this digest, ascending, keyset-paged by ``after``."""
    rows = session.execute(
        select(EntrySubject.entry_idx)
        .where(EntrySubject.algorithm == algorithm, EntrySubject.digest == digest, EntrySubject.entry_idx > after)
        .group_by(EntrySubject.entry_idx)
        .order_by(EntrySubject.entry_idx)
        .limit(limit)
    )
    return [r[0] for r in rows]


def count_entries(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Entry)).scalar_one()


def iter_entries(session: Session, start: int = 0, end: int | None = None, chunk: int = 5000) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """(idx, data, leaf_hash, chain_hash) in index order, streamed in chunks (memory flat in n)."""
    after = start - 1
    while True:
        q = select(Entry.idx, Entry.data, Entry.leaf_hash, Entry.chain_hash).where(Entry.idx > after)
        if end is not None:
            q = q.where(Entry.idx < end)
        rows = session.execute(q.order_by(Entry.idx).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def iter_tree_hashes(session: Session, start: int = 0, end: int | None = None, chunk: int = 10000) -> Iterator[tuple[int, bytes]]:
    after = start - 1
    while True:
        q = select(TreeHash.position, TreeHash.hash).where(TreeHash.position > after)
        if end is not None:
            q = q.where(TreeHash.position < end)
        rows = session.execute(q.order_by(TreeHash.position).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


# ------------------------------------------------------------------------------ checkpoints


def insert_checkpoint(session: Session, tree_size: int, root_hash: bytes, note: str, issued_at: int) -> None:
    _executemany(session, "checkpoints", ("tree_size", "root_hash", "note", "issued_at"), [(tree_size, root_hash, note, issued_at)])


def latest_checkpoint(session: Session) -> Checkpoint | None:
    return session.execute(select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1)).scalar_one_or_none()


def latest_checkpoint_root(session: Session) -> tuple[int, bytes] | None:
    """The size and root hash of the latest checkpoint (plain SQL: the sequencer reads it per batch)."""
    row = _one(session, "SELECT tree_size, root_hash FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
    return (int(row[0]), bytes(row[1])) if row is not None else None


def checkpoint_of_size(session: Session, tree_size: int) -> Checkpoint | None:
    return session.get(Checkpoint, tree_size)


def list_checkpoints(session: Session, *, after: int = -1, limit: int = 100) -> list[Checkpoint]:
    return list(
        session.execute(
            select(Checkpoint).where(Checkpoint.tree_size > after).order_by(Checkpoint.tree_size).limit(limit)
        ).scalars()
    )


def iter_checkpoints(session: Session) -> Iterator[Checkpoint]:
    after = -1
    while True:
        page = list_checkpoints(session, after=after, limit=1000)
        if not page:
            return
        yield from page
        after = page[-1].tree_size


# ------------------------------------------------------------------------------ tokens


def add_token(session: Session, name: str, scope: str, token_hash: bytes, created_at: int) -> None:
    session.add(ApiToken(name=name, scope=scope, token_hash=token_hash, created_at=created_at))
    session.flush()


def token_by_hash(session: Session, token_hash: bytes) -> ApiToken | None:
    return session.execute(select(ApiToken).where(ApiToken.token_hash == token_hash)).scalar_one_or_none()




def current_size(session: Session) -> int:
    """The tree size the sequencer has reached (committed), without taking its lock (plain SQL:
    read per request, and first thing in every audit)."""
    row = _one(session, "SELECT size FROM sequencer WHERE id = 1")
    size = row[0] if row is not None else None
    if size is None:
        raise ConfigurationError("the store is not initialised: run `provledger init`")
    return int(size)


def log_identity_row(session: Session) -> tuple[str, str]:
    """(origin, vkey) of the log the store belongs to (plain SQL: ``log_info`` without the ORM)."""
    row = session.connection().exec_driver_sql("SELECT origin, vkey FROM log_info WHERE id = 1").first()
    if row is None:
        raise ConfigurationError("the store is not initialised: run `provledger init`")
    return str(row[0]), str(row[1])


def stream_chunks(
    session: Session, table: str, columns: Sequence[str], *, start: int = 0, end: int | None = None, chunk: int = 20000
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``table`` in the order of its first column (the key), as plain tuples, a chunk at a time.

    The audit's hot path: a raw DBAPI cursor (binary rows on psycopg) and keyset pages, so memory
    stays flat in n and no per-row object is built beyond the driver's tuple. ``table`` and
    ``columns`` are ours, never user input.
    """
    key = columns[0]
    bind = session.get_bind()
    mark = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    bound = f" AND {key} < {mark}" if end is not None else ""
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} > {mark}{bound} ORDER BY {key} LIMIT {int(chunk)}"
    raw = session.connection().connection.driver_connection
    # psycopg: rows in binary format (bytea in text format is hex: twice the bytes, and a
    # conversion on both sides per value)
    cursor = raw.cursor(binary=True) if bind.dialect.driver == "psycopg" else raw.cursor()  # type: ignore[union-attr]
    try:
        after = start - 1
        while True:
            cursor.execute(sql, (after, end) if end is not None else (after,))
            rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]
    finally:
        cursor.close()
