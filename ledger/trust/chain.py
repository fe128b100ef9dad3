"""The chain of trust of an artifact: every link judged on its own, the weakest one named.

Input is the part of the ledger reachable from the artifact (``RecordInfo`` by entry index, as
of some index) and the trust state as of that index; the walk itself is in memory:

1. the artifact's links are the records whose subject has its digest;
2. each record's edges (build inputs, SBOM components, part children, firmware hardware) name
   digests; each digest's records are links one layer below, and a digest with no record is a
   ``missing`` link;
3. every record is judged on its own (``policy.judge``: not transitive), at its own integration
   time, as of the evaluation time (staleness);
4. ``untrusted`` flows *up*: every link that depends on an untrusted one, directly or not, is
   untrusted too ("rebuild from the layer below"); ``stale`` and ``missing`` do not flow;
5. the chain's verdict is its worst link's; ``weakest_link`` is that link (the deepest among
   equals, where the damage starts); ``root`` is the bottom turtle: the deepest hardware part,
   else the deepest TEE evidence, else the deepest link.

Deployments (records whose subject is the artifact and whose predicate binds it to TEE evidence)
are shown for the artifact walked from, never for its inputs (a build does not depend on where its
inputs run). A deployment link depends on the artifact's other records (its build, SBOMs), on the
firmware image its evidence's measurement matched (a ``firmware`` edge), and on a
``tee-evidence`` link: the evidence as it was appraised at submission, signed by the vendor root
it verified to. That link has no entry of its own (``index`` null); it is the bottom turtle of
the platform side.

Cycles (a record depending, through others, on itself) and diamonds (two links sharing an
input) are walked once per record and shown: cycle members say so in their reasons.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.trust.graph import WALKED_KINDS, Edge
from ledger.trust.policy import TrustState, judge, rank, worst
from ledger.trust.predicates import kind_of

__all__ = ["MAX_LINKS", "RecordInfo", "TeeInfo", "evaluate_chain", "parse_digest"]

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


@dataclass
class _Link:
    index: int | None
    kind: str
    subject: str
    depth: int
    verdict: str = "trusted"
    signer: str | None = None
    key_id: str | None = None
    reasons: list[str] | None = None
    depends_on: list[int] | None = None
    #: link keys (entry index, or ("missing", digest)) this one depends on
    below: list[Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "subject": self.subject,
            "signer": self.signer,
            "key_id": self.key_id,
            "verdict": self.verdict,
            "reasons": list(self.reasons or ()),
            "depends_on": sorted(set(self.depends_on or ())),
        }


def _tee_link(record: RecordInfo, depth: int) -> _Link:
    """The TEE evidence of a deployment, judged by its stored appraisal."""
    tee = record.tee
    host = f"{tee.evidence_type} evidence of host {tee.host_id}" if tee else "TEE evidence"
    subject = f"{host} (deployment entry {record.index})"
    if tee is None:
        return _Link(None, "tee-evidence", subject, depth, "untrusted",
                     reasons=["the ledger holds no appraisal of this deployment's evidence"])
    if tee.verdict != "accept":
        return _Link(None, "tee-evidence", subject, depth, "untrusted", signer=tee.root_name,
                     key_id=tee.root_fingerprint, reasons=list(tee.failed) or ["the appraisal did not accept it"])
    return _Link(None, "tee-evidence", subject, depth, "trusted", signer=tee.root_name,
                 key_id=tee.root_fingerprint, reasons=[])


def _judge_record(record: RecordInfo, state: TrustState, as_of_time: int, link: _Link) -> None:
    kind = link.kind
    if kind == "key-event":
        ok = state.root_key_id is not None and state.root_key_id in record.signers
        link.verdict = "trusted" if ok else "untrusted"
        link.signer = "administrator" if ok else None
        link.key_id = state.root_key_id if ok else (record.signers[0] if record.signers else None)
        link.reasons = [] if ok else ["a key event not signed by the ledger's administrator key"]
        return
    j = judge(
        state,
        predicate_type=record.predicate_type,
        subject_names=[name for _, _, name in record.subjects],
        key_ids=record.signers,
        time=record.integrated_time,
        as_of=as_of_time,
    )
    link.verdict = j.verdict
    link.reasons = list(j.reasons)
    counted = j.key_ids or record.signers
    link.key_id = counted[0] if counted else None
    principals = j.principals or tuple(
        dict.fromkeys(state.keys[k].principal for k in record.signers if k in state.keys)
    )
    link.signer = ", ".join(principals) if principals else None


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


def evaluate_chain(
    artifact: Digest,
    records: Mapping[int, RecordInfo],
    state: TrustState,
    *,
    as_of_time: int,
    max_links: int = MAX_LINKS,
) -> dict[str, Any]:
    """The chain of trust JSON (GUIDE: ``{"artifact","verdict","weakest_link","root","links"}``)."""
    by_digest: dict[Digest, list[int]] = {}
    for record in sorted(records.values(), key=lambda r: r.index):
        for alg, digest, _ in record.subjects:
            by_digest.setdefault((alg, digest), []).append(record.index)

    links: dict[Any, _Link] = {}
    order: list[Any] = []
    queue: deque[tuple[Any, Digest, int]] = deque()
    truncated = False

    def is_deployment(index: int) -> bool:
        return kind_of(records[index].predicate_type) == "deployment"

    def reach(digest: Digest, depth: int) -> list[Any]:
        """The link keys for a digest (creating and queueing new ones, up to ``max_links``)."""
        nonlocal truncated
        indexes = by_digest.get(digest)
        if indexes and depth > 0:
            # where an input runs is not part of what was built from it
            indexes = [i for i in indexes if not is_deployment(i)]
        keys: list[Any] = list(indexes) if indexes else [("missing", digest)]
        out = []
        for key in keys:
            if key not in links:
                if len(links) >= max_links:
                    truncated = True
                    continue
                if isinstance(key, tuple):
                    link = _Link(None, "missing", f"{digest[0]}:{digest[1]}", depth, "missing", reasons=[])
                else:
                    link = _Link(key, kind_of(records[key].predicate_type), f"{digest[0]}:{digest[1]}", depth)
                links[key] = link
                order.append(key)
                queue.append((key, digest, depth))
            out.append(key)
        return out

    def _deployment_below(record: RecordInfo, key: int, depth: int, below: list[Any]) -> list[Any]:
        """A deployment depends on its artifact's other records and on its TEE evidence."""
        out: list[Any] = []
        for alg, digest, _ in record.subjects:
            siblings = [i for i in by_digest.get((alg, digest), ()) if not is_deployment(i)]
            if siblings:
                out.extend(i for i in siblings if i in links)
            else:
                missing = ("missing", (alg, digest))
                if missing not in links and len(links) < max_links:
                    links[missing] = _Link(
                        None, "missing", f"{alg}:{digest}", depth + 1, "missing",
                        reasons=[f"no build record in the ledger has subject {alg}:{digest} (deployed by entry {key})"],
                    )
                    order.append(missing)
                if missing in links:
                    out.append(missing)
        out.extend(below)
        tee_key = ("tee", key)
        if tee_key not in links and len(links) < max_links:
            links[tee_key] = _tee_link(record, depth + 1)
            order.append(tee_key)
        if tee_key in links:
            out.append(tee_key)
        return out

    reach(artifact, 0)
    while queue:
        key, _, depth = queue.popleft()
        link = links[key]
        if isinstance(key, tuple):
            continue
        record = records[key]
        _judge_record(record, state, as_of_time, link)
        below: list[Any] = []
        for kind, alg, value in record.edges:
            if kind not in WALKED_KINDS:
                continue
            for child in reach((alg, value), depth + 1):
                below.append(child)
                target = links[child]
                if target.kind == "missing" and target.index is None and not target.reasons:
                    target.reasons = [f"no record in the ledger has subject {alg}:{value} ({kind} of entry {key})"]
        if link.kind == "deployment":
            below = _deployment_below(record, key, depth, below)
        link.below = list(dict.fromkeys(below))
        link.depends_on = [b for b in link.below if not isinstance(b, tuple)]
        if truncated and len(link.below) < sum(1 for e in record.edges if e[0] in WALKED_KINDS):
            link.reasons = [*(link.reasons or []), f"not all of its inputs were walked: the chain has more than {max_links} links"]

    # Cycles are shown, not followed forever.
    graph = {k: [b for b in (links[k].below or ()) if b in links] for k in order}
    for component in _cycles(order, graph):
        members = sorted(k for k in component if not isinstance(k, tuple))
        for k in component:
            links[k].reasons = [*(links[k].reasons or []), f"part of a dependency cycle through entries {members}"]

    # Untrusted flows up: everything that depends on an untrusted link.
    above: dict[Any, list[Any]] = {}
    for k in order:
        for b in links[k].below or ():
            above.setdefault(b, []).append(k)
    bad = deque(k for k in order if links[k].verdict == "untrusted")
    seen = set(bad)
    while bad:
        k = bad.popleft()
        for parent in above.get(k, ()):
            if parent in seen:
                continue
            seen.add(parent)
            p = links[parent]
            cause = links[k].index
            p.reasons = [*(p.reasons or []), f"depends on untrusted entry {cause}: rebuild from the layer below"]
            p.verdict = "untrusted"
            bad.append(parent)
    ordered = [links[k] for k in order]

    def depth_then_index(link: _Link) -> tuple[int, int]:
        return (-link.depth, link.index if link.index is not None else 1 << 62)

    weakest = min(ordered, key=lambda l: (-rank(l.verdict), *depth_then_index(l)))
    parts = [l for l in ordered if l.kind == "hardware-part"] or [l for l in ordered if l.kind == "tee-evidence"]
    root = min(parts or ordered, key=depth_then_index)
    return {
        "artifact": f"{artifact[0]}:{artifact[1]}",
        "verdict": worst(l.verdict for l in ordered),
        "weakest_link": weakest.to_json(),
        "root": root.to_json(),
        "links": [l.to_json() for l in ordered],
    }
