"""The OpenAPI 3.1 description served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from ledger.services.shards.plan import MAX_SHARD_LEVEL

__all__ = ["OPENAPI"]

_error = {"$ref": "#/components/schemas/Error"}
_receipt = {"$ref": "#/components/schemas/Receipt"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", "content": {"application/json": {"schema": _error}}} for c in codes}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: numbers in paths and queries: ASCII digits only, at most 2**63 - 1 (anything else: 400)
_index = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _int_param(name: str, required: bool = True, minimum: int = 0) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {**_index, "minimum": minimum}}


def _path_index(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _index}


_hashes = {"type": "array", "items": {"type": "string", "format": "byte"}}
#: a digest as the API parses it (``ledger.trust.chain.parse_digest``): exactly lowercase hex
_DIGEST_PATTERN = (
    "^(sha256:)?[0-9a-f]{64}$|^sha1:[0-9a-f]{40}$|^sha384:[0-9a-f]{96}$|^sha512:[0-9a-f]{128}$|^gitCommit:[0-9a-f]{1,128}$"
)
_digest = {"type": "string", "pattern": _DIGEST_PATTERN}
_subject = {
    "type": "string",
    "pattern": "^sha256:[0-9a-f]{64}$|^sha1:[0-9a-f]{40}$|^sha384:[0-9a-f]{96}$|^sha512:[0-9a-f]{128}$|^gitCommit:[0-9a-f]{1,128}$",
}
_base64 = {"type": "string", "pattern": "^[A-Za-z0-9+/_-]*={0,2}$"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "provenance-ledger",
        "version": "1",
        "description": (
            "Input is judged strictly before anything is stored. POST bodies must be application/json "
            "(UTF-8), else 415. JSON bodies (and the statements inside envelopes) are refused with 400 "
            "for duplicate object keys, strings that are not Unicode scalar values (lone surrogates), "
            "nesting deeper than 64 levels, integers beyond ±(2**64 - 1), non-finite numbers. Numbers in "
            "paths and queries are ASCII digits up to 2**63 - 1, else 400. Subject names follow the "
            "grammar in the README (no empty, '.' or '..' segments, no control characters)."
        ),
    },
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
                "description": (
                    "A DSSE envelope whose payload is an in-toto Statement (base64); the statement "
                    "is checked as strictly as the body (400), then the signatures (422), then trust (403)."
                ),
                "required": ["payload", "payloadType", "signatures"],
                "additionalProperties": False,
                "properties": {
                    "payload": {**_base64, "minLength": 4},
                    "payloadType": {"const": "application/vnd.in-toto+json"},
                    "signatures": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 16,
                        "items": {
                            "type": "object",
                            "required": ["sig"],
                            "additionalProperties": False,
                            "properties": {"keyid": {"type": "string"}, "sig": {**_base64, "minLength": 4}},
                        },
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
                    **_errors(400, 401, 403, 409, 413, 415, 422),
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
                    {"name": "subject", "in": "query", "required": True, "schema": _subject},
                    _int_param("after", required=False),
                    _int_param("limit", required=False, minimum=1),
                ],
                "responses": {"200": _json({"type": "object"}), **_errors(400)},
            },
        },
        "/entries/batch": {
            "post": {
                "summary": "Append many envelopes; a receipt or an error per envelope, in order",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["envelopes"],
                                "properties": {
                                    "envelopes": {
                                        "type": "array",
                                        "description": (
                                            "at most 10,000 items (more: 413); each an envelope or a Sigstore bundle, "
                                            "and an item that is not (not even a JSON object) gets its own error in results"
                                        ),
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 413, 415, 503)},
            }
        },
        "/entries/{index}": {
            "get": {
                "summary": "An entry with its decoded statement",
                "parameters": [_path_index("index")],
                "responses": {"200": _json({"type": "object"}), **_errors(400, 404)},
            }
        },
        "/receipt/{index}": {
            "get": {
                "summary": "The receipt of an entry against the latest checkpoint",
                "parameters": [_path_index("index")],
                "responses": {"200": _json(_receipt), **_errors(400, 404)},
            }
        },
        "/artifacts/{digest}/chain": {
            "get": {
                "summary": "The chain of trust of an artifact: each link a digest held up by its best record (rests_on, set_aside, why), its weakest link and roots",
                "parameters": [
                    {"name": "digest", "in": "path", "required": True, "schema": _digest},
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
                "summary": "Entries by subject digest, subject name, signer, predicate type or time range (keyset paged; at least one of them, else 400)",
                "parameters": [
                    {"name": "digest", "in": "query", "required": False, "schema": _digest},
                    {"name": "name", "in": "query", "required": False, "schema": {"type": "string", "minLength": 1}},
                    *({"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in ("signer", "predicate_type")),
                    *({"name": n, "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}
                      for n in ("since", "until")),
                    _int_param("after", required=False, minimum=-1),
                    _int_param("limit", required=False, minimum=1),
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
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "shard_size": {
                                        "type": "integer",
                                        "enum": [1 << level for level in range(MAX_SHARD_LEVEL + 1)],
                                        "description": "entries per shard, a power of two (default: chosen from the tree size)",
                                    }
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {"202": _json({"type": "object"}, "accepted"), **_errors(400, 401, 415, 503)},
            },
            "get": {
                "summary": "Recent audit runs",
                "responses": {"200": _json({"type": "object"})},
            },
        },
        "/audits/{audit_id}": {
            "get": {
                "summary": "An audit run: state, progress and result",
                "parameters": [{**_path_index("audit_id"), "schema": {**_index, "minimum": 1}}],
                "responses": {"200": _json({"type": "object"}), **_errors(400, 404)},
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
                "parameters": [_int_param("after", required=False), _int_param("limit", required=False, minimum=1)],
                "responses": {"200": _json({"type": "object"}), **_errors(400)},
            }
        },
        "/proof/inclusion": {
            "get": {
                "summary": "An inclusion proof (400 unless index < tree_size <= the log's size)",
                "parameters": [_int_param("index"), _int_param("tree_size", minimum=1)],
                "responses": {"200": _json({"type": "object", "properties": {"hashes": _hashes}}), **_errors(400, 404)},
            }
        },
        "/proof/consistency": {
            "get": {
                "summary": "A consistency proof (400 unless old <= new <= the log's size)",
                "parameters": [_int_param("old"), _int_param("new")],
                "responses": {"200": _json({"type": "object", "properties": {"hashes": _hashes}}), **_errors(400, 404)},
            }
        },
    },
}

# Any GET may meet the WSGI server's own limit on the request line (a URL of more than ~4 KiB).
for _path_item in OPENAPI["paths"].values():
    if "get" in _path_item:
        _path_item["get"]["responses"].setdefault("414", {"description": "the request line is over the server's limit"})
