"""Shared pieces of the benchmarks: machine description, fresh stores, signed envelopes."""

from __future__ import annotations

import json
import time
import os
import platform
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.records.dsse import sign_envelope
from ledger.records.keys import PrivateKey, generate_private_key
from ledger.services import registry, setup
from ledger.services.log import LogIdentity
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1

POSTGRES_ADMIN_URL = os.environ.get(
    "PROVLEDGER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PREDICATE = "https://slsa.dev/provenance/v1"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class BenchStore:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    log: LogIdentity


@contextmanager
def fresh_store(backend: str) -> Iterator[BenchStore]:
    """A new, initialised ledger: a SQLite file in a temporary folder, or a new PostgreSQL database."""
    with tempfile.TemporaryDirectory(prefix="provledger-bench-") as home:
        env = {"PROVLEDGER_HOME": home}
        admin: Engine | None = None
        name = f"provledger_bench_{uuid.uuid4().hex[:10]}"
        if backend == "postgres":
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            env["PROVLEDGER_DATABASE_URL"] = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        settings = Settings.from_env(env)
        log = setup.init_store(settings)
        engine = make_engine(settings.database_url)
        try:
            yield BenchStore(settings, engine, make_session_factory(engine), log)
        finally:
            engine.dispose()
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


def register(store: BenchStore, key: PrivateKey) -> None:
    """Register the benchmark's signer (a key event signed by the store's admin key)."""
    from ledger.trust.policy import Grant  # noqa: PLC0415
    from ledger.services.setup import load_admin_key  # noqa: PLC0415

    registry.add_key(
        store.sessions, store.log, load_admin_key(store.settings), "bench-builder", key.public_key,
        [Grant(("https://slsa.dev/*",))], now=int(time.time()),
    )


def statement(i: int) -> bytes:
    """A realistic, distinct SLSA v1 statement (about 600 bytes)."""
    return json.dumps(
        {
            "_type": STATEMENT_V1,
            "subject": [{"name": f"pkg/service-{i % 97}/build-{i}.tar.gz", "digest": {"sha256": f"{i:064x}"}}],
            "predicateType": PREDICATE,
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                    "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": "https://github.com/example/service"}},
                    "resolvedDependencies": [{"uri": "git+https://github.com/example/service@refs/heads/main", "digest": {"gitCommit": f"{i:040x}"}}],
                },
                "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
            },
        },
        separators=(",", ":"),
    ).encode()


def signed_envelopes(key: PrivateKey, n: int) -> list[bytes]:
    return [json.dumps(sign_envelope(statement(i), IN_TOTO_PAYLOAD_TYPE, [key])).encode() for i in range(n)]


def new_key() -> PrivateKey:
    return generate_private_key("ed25519")


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def build_signed_ledger(backend_store: BenchStore, key: PrivateKey, n: int, *, batch: int = 5000, progress: bool = True) -> None:
    """Fill a store with n genuinely signed entries, quickly: each batch is signed here and
    integrated directly (the signatures are made by ``key``; verification is what the append
    benchmark measures, so this fill skips it)."""
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    from ledger.records.leaf import canonical_strings  # noqa: PLC0415
    from ledger.services.append import Prepared, Signer, integrate  # noqa: PLC0415
    from ledger.trust.fold import content_hash  # noqa: PLC0415
    from ledger.trust.graph import edges_of  # noqa: PLC0415

    signer = (Signer(key.key_id, key.public_key.spki_der),)
    start = time.time()
    for lo in range(0, n, batch):
        ready = []
        for i in range(lo, min(n, lo + batch)):
            payload = statement(i)
            canonical = canonical_strings(sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [key]))
            digest = ("sha256", f"{i:064x}")
            ready.append(
                # the rows the append path would derive (the audit rebuilds and compares them)
                Prepared(
                    canonical=canonical,
                    envelope_hash=content_hash(IN_TOTO_PAYLOAD_TYPE, payload, [key.key_id]),
                    predicate_type=PREDICATE,
                    subjects=((*digest, f"pkg/service-{i % 97}/build-{i}.tar.gz"),),
                    signers=signer,
                    edges=tuple(edges_of(PREDICATE, json.loads(payload)["predicate"], [digest])),
                )
            )
        with backend_store.sessions() as session, session.begin():
            integrate(session, ready, backend_store.log, now=int(time.time()))
        if progress:
            done = min(n, lo + batch)
            print(f"\rfilling: {done}/{n} entries ({done / (time.time() - start):,.0f}/s)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)


@contextmanager
def persistent_sqlite_ledger(n: int, folder: Path | None = None) -> Iterator[BenchStore]:
    """A SQLite ledger of n signed entries kept under var/bench/ between runs (built once)."""
    folder = folder or Path(__file__).resolve().parent.parent / "var" / "bench" / f"ledger-{n}"
    settings = Settings.from_env({"PROVLEDGER_HOME": str(folder)})
    ready_marker = folder / "READY"
    if not ready_marker.exists():
        import shutil  # noqa: PLC0415

        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log = setup.init_store(settings)
        key = new_key()
        engine = make_engine(settings.database_url)
        store = BenchStore(settings, engine, make_session_factory(engine), log)
        register(store, key)
        build_signed_ledger(store, key, n)
        engine.dispose()
        ready_marker.write_text(str(n))
    log = setup.init_store(settings)
    engine = make_engine(settings.database_url)
    try:
        yield BenchStore(settings, engine, make_session_factory(engine), log)
    finally:
        engine.dispose()


def hashing_floor_passes(rows: list[tuple[object, bytes, bytes]], passes: int) -> list[float]:
    """Entries/s of each of ``passes`` passes of the bare hashing an audit cannot avoid: per
    (idx, data, leaf_hash) row one leaf hash over its stored bytes, one chain link and (on
    average) one interior node, in a plain loop over rows already in memory."""
    import hashlib  # noqa: PLC0415

    sha256 = hashlib.sha256
    rates = []
    for _ in range(passes):
        head = bytes(32)
        t = time.perf_counter()
        for _, data, leaf in rows:
            sha256(b"\x00" + data).digest()
            head = sha256(head + leaf).digest()
            sha256(b"\x01" + leaf + head).digest()
        rates.append(len(rows) / (time.perf_counter() - t))
    return rates
