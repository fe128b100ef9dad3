"""A small client for build pipelines: sign a statement, submit it, keep and check the receipt.

Standard library HTTP only (``urllib``), so a pipeline needs nothing beyond this package::

    from ledger.client import LedgerClient, sign_statement
    from ledger.records.keys import load_private_key

    key = load_private_key(open("ci.pem", "rb").read())
    envelope = sign_statement(statement_bytes, [key])
    client = LedgerClient("https://ledger.example", token=os.environ["PROVLEDGER_TOKEN"])
    receipt = client.submit(envelope)                  # 201 or 200 (duplicate): a receipt
    client.verify(receipt, log_vkey, public_keys=[key.public_key])   # offline check
    print(client.chain("sha256:" + digest)["verdict"])
    result = client.verify_artifact("sha256:" + digest, log_vkey)   # trusts only what it checks
    assert result.ok, result.chain["weakest_link"]

Errors are the ledger's own (``ledger.errors``): 400 → MalformedError, 401 → ConfigurationError,
403 → NotTrustedError, 404 → NotFoundError, 413 → TooLargeError, 422 → VerificationError, and
anything unreachable → UnavailableError.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.records.dsse import sign_envelope
from ledger.errors import (
    ConfigurationError,
    LedgerError,
    MalformedError,
    NotFoundError,
    NotTrustedError,
    TooLargeError,
    UnavailableError,
    VerificationError,
)
from ledger.records.keys import PrivateKey, PublicKey
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, parse_statement
from ledger.untrusted.json import parse_json
from ledger.trust.bundle import MAX_VERDICT_BUNDLE_BYTES, Expectations, VerifiedBundle
from ledger.trust.bundle_verify import verify_verdict_bundle
from ledger.verify import VerifiedReceipt, verify_receipt
from ledger.tlog.witness_policy import parse_witness_policy

__all__ = ["LedgerClient", "sign_statement", "statement"]

#: the most a JSON answer may hold (a batch of 10,000 receipts is about 30 MB)
MAX_RESPONSE_BYTES = 128 * 1024 * 1024
#: the most of an error answer that is read (its message is one sentence)
MAX_ERROR_BYTES = 1024 * 1024

_ERRORS: dict[int, type[LedgerError]] = {
    400: MalformedError,
    401: ConfigurationError,
    403: NotTrustedError,
    404: NotFoundError,
    413: TooLargeError,
    422: VerificationError,
}


def statement(subjects: Sequence[tuple[str, str]], predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    """An in-toto Statement v1 (JSON bytes) about (name, sha256 hex) subjects."""
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
    return json.dumps(doc, indent=2).encode("utf-8")


def sign_statement(statement_bytes: bytes, keys: Sequence[PrivateKey]) -> dict[str, Any]:
    """A DSSE envelope over the statement's bytes (unchanged), signed by each key."""
    parse_statement(statement_bytes)
    return sign_envelope(statement_bytes, IN_TOTO_PAYLOAD_TYPE, list(keys))


def _gunzip(data: bytes, limit: int | None, what: str) -> bytes:
    """Decompress a gzip body, refusing more than ``limit`` bytes out (no decompression bomb)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, (limit or MAX_VERDICT_BUNDLE_BYTES) + 1)
    except zlib.error as exc:
        raise MalformedError(f"{what}: the gzip body does not decompress: {exc}") from exc
    if len(out) > (limit or MAX_VERDICT_BUNDLE_BYTES) or inflater.unconsumed_tail:
        raise TooLargeError(f"{what}: the response is over the limit of {limit or MAX_VERDICT_BUNDLE_BYTES} bytes")
    return out


class LedgerClient:
    """The ledger's HTTP API (``/api/v1``) for one server and token."""

    def __init__(self, server: str, *, token: str | None = None, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, *, raw: bool = False, limit: int | None = None) -> Any:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip" if raw else "identity"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the caller's URL
                limit = limit or MAX_RESPONSE_BYTES  # a server that never stops sending is refused here
                data = resp.read(limit + 1)
                if len(data) > limit:
                    raise TooLargeError(f"{method} {path}: the response is over the limit of {limit} bytes")
                if resp.headers.get("Content-Encoding") == "gzip":
                    data = _gunzip(data, limit, f"{method} {path}")
                if raw:
                    return data
                return data.decode("utf-8") if resp.headers.get_content_type() == "text/plain" else parse_json(data, what=f"the answer to {method} {path}")
        except urllib.error.HTTPError as exc:
            try:
                message = parse_json(exc.read(MAX_ERROR_BYTES), what="the error")["error"]["message"]
            except (MalformedError, KeyError, TypeError):
                message = str(exc.reason)
            raise _ERRORS.get(exc.code, UnavailableError)(f"{method} {path} failed ({exc.code}): {message}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise UnavailableError(f"cannot reach {self.server}: {getattr(exc, 'reason', exc)}") from exc

    def submit(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """Append one envelope; its receipt (the existing one for a duplicate)."""
        return self._request("POST", "/api/v1/entries", envelope)

    def submit_batch(self, envelopes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append many; per envelope, a receipt or ``{"error": {...}}``, in order."""
        return self._request("POST", "/api/v1/entries/batch", {"envelopes": list(envelopes)})["results"]

    def receipt(self, index: int) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/receipt/{int(index)}")

    def checkpoint(self) -> str:
        return self._request("GET", "/api/v1/checkpoint")

    def entries(self, digest: str) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/entries?" + urllib.parse.urlencode({"subject": digest}))["entries"]

    def chain(self, digest: str, *, at: int | None = None) -> dict[str, Any]:
        query = f"?at={int(at)}" if at is not None else ""
        return self._request("GET", f"/api/v1/artifacts/{urllib.parse.quote(digest, safe=':')}/chain{query}")

    def verdict_bundle(self, digest: str, *, at: int | None = None) -> bytes:
        """The verdict bundle of ``digest`` (raw JSON bytes, at most ``MAX_VERDICT_BUNDLE_BYTES``).
        Nothing in it is believed until :func:`ledger.trust.bundle_verify.verify_verdict_bundle` checks it."""
        query = f"?at={int(at)}" if at is not None else ""
        path = f"/api/v1/artifacts/{urllib.parse.quote(digest, safe=':')}/bundle{query}"
        return self._request("GET", path, raw=True, limit=MAX_VERDICT_BUNDLE_BYTES)

    def verify_artifact(
        self,
        artifact: str,
        log_vkey: str,
        *,
        witness_vkeys: Sequence[str] = (),
        threshold: int | None = None,
        at: int | None = None,
        expectations: Expectations | None = None,
        max_age: int | None = None,
        now: int | None = None,
    ) -> VerifiedBundle:
        """May I deploy ``artifact`` (``sha256:<hex>``)? Fetches its verdict bundle and verifies it
        offline against the log key (and witness policy): the server's word counts for nothing.

        Returns the recomputed verdict (``.ok``: trusted and every expectation met, ``.chain``).
        Raises NotFoundError when the server holds no record of it, VerificationError when a
        proof or signature fails, MalformedError for a malformed bundle, UnavailableError.
        """
        policy = parse_witness_policy(list(witness_vkeys), threshold)
        raw = self.verdict_bundle(artifact, at=at)
        return verify_verdict_bundle(
            raw,
            artifact,
            log_vkey,
            witness_verifiers=policy.verifiers if policy else (),
            threshold=policy.threshold if policy else 0,
            expectations=expectations or Expectations(),
            at=at,
            max_age=max_age,
            now=now,
        )

    def search(self, **filters: Any) -> dict[str, Any]:
        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        return self._request("GET", "/api/v1/search?" + query)

    @staticmethod
    def verify(receipt: Mapping[str, Any], log_vkey: str, *, public_keys: Sequence[PublicKey] = ()) -> VerifiedReceipt:
        """Offline: the receipt's inclusion proof and checkpoint against the log key (and,
        if given, that the record is signed by these keys). Raises VerificationError."""
        return verify_receipt(receipt, log_vkey, public_keys=public_keys)
