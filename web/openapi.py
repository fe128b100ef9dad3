"""The OpenAPI 3.1 description served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]

_error = {"$ref": "#/components/schemas/Error"}
_receipt = {"$ref": "#/components/schemas/Receipt"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", "content": {"application/json": {"schema": _error}}} for c in codes}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _int_param(name: str, required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "integer", "minimum": 0}}


_hashes = {"type": "array", "items": {"type": "string", "format": "byte"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "provenance-ledger", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "An API token from `provledger tokens create` (stored hashed). `provledger tokens list` "
                    "shows names, scopes, created and last used; `provledger tokens revoke NAME` (or the admin "
                    "page) revokes it: a missing, wrong or revoked token gets 401."
                ),
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Receipt": {
                "type": "object",
                "required": ["index", "tree_size", "entry", "proof"],
                "properties": {
                    "index": {"type": "integer"},
                    "tree_size": {"type": "integer"},
                    "entry": {"type": "string", "format": "byte", "description": "base64 leaf data (RFC 8785 JSON)"},
                    "proof": {"type": "string", "description": "c2sp.org/tlog-proof@v1 text"},
                },
            },
            "VerdictBundle": {
                "type": "object",
                "required": ["media_type", "subject", "checkpoint", "trust_head", "root_of_trust", "entries"],
                "properties": {
                    "media_type": {"const": "application/vnd.provledger.verdict-bundle.v1+json"},
                    "subject": {"type": "string", "description": "sha256:<64 hex>"},
                    "at": {"type": ["integer", "null"], "description": "judged as of this entry index (null: the checkpoint)"},
                    "checkpoint": {"type": "string", "description": "C2SP signed checkpoint note, cosignatures included"},
                    "trust_head": {"type": "string", "description": "provenance-ledger/trust-head/v1 note signed by the log key"},
                    "root_of_trust": {
                        "type": "object",
                        "properties": {"key_id": {"type": "string"}, "public_key": {"type": "string", "format": "byte"}},
                    },
                    "entries": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["index", "entry", "inclusion"],
                            "properties": {
                                "index": {"type": "integer"},
                                "entry": {"type": "string", "format": "byte", "description": "base64 leaf data"},
                                "inclusion": {"type": "array", "items": {"type": "string", "format": "byte"}},
                            },
                        },
                    },
                },
            },
            "Envelope": {
                "type": "object",
                "required": ["payload", "payloadType", "signatures"],
                "properties": {
                    "payload": {"type": "string"},
                    "payloadType": {"type": "string"},
                    "signatures": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}}},
                    },
                },
            },
        },
    },
    "paths": {
        "/entries": {
            "post": {
                "summary": "Append a DSSE envelope carrying an in-toto Statement",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
                "responses": {
                    "201": _json(_receipt, "appended"),
                    "200": _json(_receipt, "a duplicate (same payload type, payload and verifying keys): the existing entry's receipt"),
                    **_errors(400, 401, 403, 409, 413, 422),
                    "503": {
                        "description": (
                            "writes are stopped: the store failed an integrity check — at start-up, in the "
                            "background audit, or the sequencer's right-edge check before each batch (a store "
                            "cut or rewritten behind the server's back); the message names the first bad index "
                            "and /healthz reports status compromised"
                        ),
                        "content": {"application/json": {"schema": _error}},
                    },
                },
            },
            "get": {
                "summary": "Entries with a subject digest (keyset paged)",
                "parameters": [
                    {"name": "subject", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "required": False, "schema": {"type": "integer"}},
                    _int_param("limit", required=False),
                ],
                "responses": {"200": _json({"type": "object"}), **_errors(400)},
            },
        },
        "/entries/batch": {
            "post": {
                "summary": "Append many envelopes; a receipt or an error per envelope, in order",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 413, 503)},
            }
        },
        "/entries/{index}": {
            "get": {
                "summary": "An entry with its decoded statement",
                "parameters": [{"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json({"type": "object"}), **_errors(404)},
            }
        },
        "/receipt/{index}": {
            "get": {
                "summary": "The receipt of an entry against the latest checkpoint",
                "parameters": [{"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json(_receipt), **_errors(404)},
            }
        },
        "/artifacts/{digest}/chain": {
            "get": {
                "summary": "The chain of trust of an artifact: each link a digest held up by its best record (rests_on, set_aside, why), its weakest link and roots",
                "parameters": [
                    {"name": "digest", "in": "path", "required": True, "schema": {"type": "string"}},
                    _int_param("at", required=False),
                ],
                "responses": {"200": _json({"type": "object"}), **_errors(400, 404)},
            }
        },
        "/artifacts/{digest}/bundle": {
            "get": {
                "summary": "The verdict bundle of an artifact: everything needed to re-derive its verdict offline",
                "description": "Checkpoint (with cosignatures), the log-signed trust head, the root of trust, and every "
                "record of every link plus the whole key history, each with its inclusion proof. It carries no verdict: "
                "`provledger verify --bundle FILE --log-key VKEY` recomputes one. Cached per checkpoint: a strong ETag "
                "(send If-None-Match for a 304); sent gzip-compressed when Accept-Encoding allows (about 4:1).",
                "parameters": [
                    {"name": "digest", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^sha256:[0-9a-fA-F]{64}$"}},
                    _int_param("at", required=False),
                    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "the verdict bundle",
                        "headers": {"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}},
                        "content": {"application/vnd.provledger.verdict-bundle.v1+json": {"schema": {"$ref": "#/components/schemas/VerdictBundle"}}},
                    },
                    "304": {"description": "not modified (the ETag still matches)"},
                    **_errors(400, 404),
                },
            }
        },
        "/search": {
            "get": {
                "summary": "Entries by subject digest, subject name, signer, predicate type or time range (keyset paged)",
                "parameters": [
                    *({"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                      for n in ("digest", "name", "signer", "predicate_type", "since", "until")),
                    _int_param("after", required=False),
                    _int_param("limit", required=False),
                ],
                "responses": {
                    "200": _json({"type": "object", "properties": {"entries": {"type": "array"}, "next": {}}}),
                    **_errors(400),
                },
            }
        },
        "/audits": {
            "post": {
                "summary": "Start a distributed audit on the Celery workers (admin token)",
                "security": [{"bearer": []}],
                "responses": {"202": _json({"type": "object"}, "accepted"), **_errors(400, 401, 503)},
            },
            "get": {
                "summary": "Recent audit runs",
                "responses": {"200": _json({"type": "object"})},
            },
        },
        "/audits/{audit_id}": {
            "get": {
                "summary": "An audit run: state, progress and result",
                "parameters": [{"name": "audit_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json({"type": "object"}), **_errors(404)},
            }
        },
        "/signers": {
            "get": {
                "summary": "Principals, keys, identities and TEE roots with grants, status and decay (stale, stale_since, next_review_by), thresholds and the root of trust",
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/checkpoint": {
            "get": {
                "summary": "The latest checkpoint (C2SP signed note)",
                "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/checkpoints": {
            "get": {
                "summary": "Every checkpoint ever issued (keyset paged)",
                "parameters": [_int_param("after", required=False), _int_param("limit", required=False)],
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/proof/inclusion": {
            "get": {
                "summary": "An inclusion proof",
                "parameters": [_int_param("index"), _int_param("tree_size")],
                "responses": {"200": _json({"type": "object", "properties": {"hashes": _hashes}}), **_errors(400, 404)},
            }
        },
        "/proof/consistency": {
            "get": {
                "summary": "A consistency proof",
                "parameters": [_int_param("old"), _int_param("new")],
                "responses": {"200": _json({"type": "object", "properties": {"hashes": _hashes}}), **_errors(400, 404)},
            }
        },
    },
}
