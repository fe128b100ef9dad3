"""What a chain of trust is made of: ``RecordInfo`` (one entry as the chain sees it), ``TeeInfo``
(a deployment's stored TEE appraisal), digests, and cycle finding. The verdict itself is
``ledger.trust.verdict.chain_verdict`` (a link is a digest, held up by the best record about it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.trust.graph import Edge

__all__ = ["MAX_LINKS", "RecordInfo", "TeeInfo", "parse_digest"]

#: links shown at most; past it the walk stops and what it did not reach shows as missing
MAX_LINKS = 20_000

Digest = tuple[str, str]


@dataclass(frozen=True)
class TeeInfo:
    """A deployment's stored TEE appraisal, as its chain shows it."""

    evidence_type: str
    host_id: str
    verdict: str  # the appraisal's: "accept" or "reject"
    root_name: str | None
    root_fingerprint: str | None
    #: "<check>: <reason>" of each failed check
    failed: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> TeeInfo:
        root = doc.get("root") or {}
        return cls(
            evidence_type=str(doc.get("evidence_type", "")),
            host_id=str(doc.get("host_id", "")),
            verdict=str(doc.get("verdict", "reject")),
            root_name=root.get("name"),
            root_fingerprint=root.get("fingerprint"),
            failed=tuple(f"{c.get('name')}: {c.get('reason')}" for c in doc.get("checks", ()) if not c.get("ok")),
        )


@dataclass(frozen=True)
class RecordInfo:
    """What the chain needs of one entry."""

    index: int
    integrated_time: int
    predicate_type: str
    #: (algorithm, lowercase digest, name)
    subjects: tuple[tuple[str, str, str], ...]
    #: key ids of the keys the ledger verified the signatures with
    signers: tuple[str, ...]
    edges: tuple[Edge, ...]
    #: deployments: the stored TEE appraisal (None: not a deployment, or none stored)
    tee: TeeInfo | None = None
    #: what the leaf says about how the record was checked, shown in its link's reasons
    #: (e.g. a Sigstore bundle whose Rekor inclusion was only promised); never a verdict
    notes: tuple[str, ...] = ()


def parse_digest(text: str) -> Digest:
    """``sha256:<hex>`` (or bare hex, taken as sha256) → (algorithm, lowercase digest)."""
    from ledger.errors import MalformedError  # noqa: PLC0415

    alg, sep, value = text.strip().partition(":")
    if not sep:
        alg, value = "sha256", alg
    value = value.lower()
    lengths = {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
    if alg not in lengths and alg != "gitCommit":
        raise MalformedError(f"unsupported digest algorithm {alg!r} in {text!r}: use sha256:<hex>")
    if not value or any(c not in "0123456789abcdef" for c in value) or (alg in lengths and len(value) != lengths[alg]):
        raise MalformedError(f"{text!r} is not a {alg} digest: give {alg}:<{lengths.get(alg, 'hex')} hex digits>")
    return alg, value


def _cycles(nodes: list[Any], graph: Mapping[Any, list[Any]]) -> list[list[Any]]:
    """Strongly connected components with more than one node, or a self-loop (iterative Tarjan)."""
    index_of: dict[Any, int] = {}
    low: dict[Any, int] = {}
    on_stack: set[Any] = set()
    stack: list[Any] = []
    found: list[list[Any]] = []
    counter = 0
    for start in nodes:
        if start in index_of:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index_of[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(component)
    return found
