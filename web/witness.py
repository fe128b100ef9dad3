"""The witness's HTTP adapter: ``POST /add-checkpoint`` (c2sp.org/tlog-witness) over a Witness.

Everything the witness decides lives in ``ledger.tlog.witness``; this module only moves bytes. It is
started by ``provledger witness serve`` (which imports it lazily: the core never imports Flask).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from ledger.tlog.witness import MAX_REQUEST_BYTES, Witness

__all__ = ["create_witness_app", "serve_witness"]


def create_witness_app(witness: Witness, *, clock: Callable[[], float] = time.time) -> Flask:
    """A WSGI app for ``witness``; ``clock`` gives the cosignature timestamps."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None

    @app.post("/add-checkpoint")
    def add_checkpoint() -> Response:
        length = request.content_length
        if length is not None and length > MAX_REQUEST_BYTES:
            return _text(413, f"the request is over the limit of {MAX_REQUEST_BYTES} bytes\n")
        body = request.stream.read(MAX_REQUEST_BYTES + 1)
        result = witness.add_checkpoint(body, now=int(clock()))
        response = Response(result.body, status=result.status, content_type=result.content_type)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def about() -> Response:
        origins = "".join(f"log {origin}\n" for origin in sorted(witness.logs))
        return _text(200, f"witness {witness.vkey}\n{origins}")

    return app


def _text(status: int, body: str) -> Response:
    return Response(body.encode("utf-8"), status=status, content_type="text/plain; charset=utf-8")


def serve_witness(witness: Witness, *, host: str, port: int, threads: int = 8) -> int:
    """Serve the witness under gunicorn (one process; the state store's lock serialises writes)."""
    from gunicorn.app.base import BaseApplication  # noqa: PLC0415

    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address in brackets

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": address,
                "workers": 1,
                "worker_class": "gthread",
                "threads": threads,
                "accesslog": "-",
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_witness_app(witness)

    print(f"provledger: witness {witness.vkey} on http://{address}/add-checkpoint")
    _App().run()
    return 0
