"""Helpers: real witnesses (web/witness.py's app) on 127.0.0.1 free ports, and a ledger that appends.

Each witness runs under a threaded werkzeug server with its own FileStateStore in tmp, so the
ledger talks real HTTP to real add-checkpoint handlers. ``wrap`` puts a WSGI middleware in front
of a witness (to tamper with its replies).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from ledger.records.keys import PrivateKey, generate_private_key
from ledger.tlog.note import Ed25519CosignatureSigner
from ledger.trust.policy import Grant
from ledger.services import registry
from ledger.services.append import Appended, append_batch
from ledger.services.cosign import WitnessEndpoint
from ledger.services.setup import load_admin_key
from ledger.tlog.witness import FileStateStore, Witness
from tests.fixtures import StoreHandle, sign
from web.witness import create_witness_app

Wsgi = Callable[..., Any]

WITNESS_CLOCK = 1_760_000_000


class RunningWitness:
    """A witness serving add-checkpoint over HTTP on a free port until :meth:`stop`."""

    def __init__(self, name: str, log_vkey: str, state: Path, wrap: Callable[[Wsgi], Wsgi] | None = None) -> None:
        self.cosigner = Ed25519CosignatureSigner(name, secrets.token_bytes(32))
        self.store = FileStateStore(state)
        self.witness = Witness.from_vkeys(self.cosigner, [log_vkey], self.store)
        app: Wsgi = create_witness_app(self.witness, clock=lambda: WITNESS_CLOCK)
        if wrap is not None:
            app = wrap(app)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name=f"witness-{name}", daemon=True)
        self.thread.start()
        self.running = True

    @property
    def name(self) -> str:
        return self.cosigner.name

    @property
    def vkey(self) -> str:
        return self.cosigner.vkey

    @property
    def label(self) -> str:
        return f"{self.cosigner.name}+{self.cosigner.key_id:08x}"

    @property
    def endpoint(self) -> WitnessEndpoint:
        return WitnessEndpoint(self.cosigner.verifier(), self.url)

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)


class Witnesses:
    def __init__(self, store: StoreHandle, tmp: Path) -> None:
        self.store = store
        self.tmp = tmp
        self.running: list[RunningWitness] = []

    def start(self, n: int = 1, *, wrap: Callable[[Wsgi], Wsgi] | None = None) -> list[RunningWitness]:
        started = []
        for _ in range(n):
            i = len(self.running)
            w = RunningWitness(f"witness{i}.example", self.store.log.vkey, self.tmp / f"witness{i}" / "state.json", wrap)
            self.running.append(w)
            started.append(w)
        return started

    def stop_all(self) -> None:
        for w in self.running:
            w.stop()


class Appender:
    """Appends batches of freshly signed records through the normal append path."""

    def __init__(self, store: StoreHandle) -> None:
        self.store = store
        self.key: PrivateKey = generate_private_key("ed25519")
        admin = load_admin_key(store.settings)
        registry.add_key(store.sessions, store.log, admin, "ci", self.key.public_key, [Grant(("*",))], now=store.tick())

    def batches(self, sizes: Sequence[int]) -> list[Appended]:
        out: list[Appended] = []
        for n in sizes:
            results = append_batch(self.store.sessions, [sign(self.key) for _ in range(n)], self.store.log, now=self.store.tick())
            for r in results:
                assert isinstance(r, Appended), f"append failed: {r!r}"
            out += results  # type: ignore[arg-type]
        return out
