"""The verdict of a chain of trust: a pure function of (the records reachable from an artifact,
the trust state at the index judged at, the time of judging).

1. Each record is judged on its own (``ledger.trust.judge``), at its own index and time.
2. A record's combined verdict is the worst of its own and of each input digest's verdict.
3. A digest's verdict is the best combined verdict among the records about it (``missing`` if
   none); that record *holds the link up* (``index``/``signer`` name it, ``rests_on``). Other
   records about the digest are listed beside it (``set_aside``, and in its reasons when they are
   worse) and never pull it down: rebuilding from the layer below (a new key re-attesting a
   firmware, the pipeline recording the build again) restores trust.
4. This is a least fixpoint (records start untrusted), so a record that only rests on a
   dependency cycle never becomes trusted: no bottom turtle, no trust. Cycle members say so.
5. Deployments of the artifact are links of their own, resting on the artifact's link, the
   matched firmware's link and a ``tee-evidence`` link (the stored appraisal, re-judged against
   the trust state's TEE roots).
6. ``links`` are the links the verdict rests on; the chain's verdict is the worst of them.
   ``weakest_link``: for a chain not trusted, the deepest link whose own verdict is the chain's
   (where the damage starts); for a trusted chain the one with least margin (soonest review-by
   or not-after, then thinnest threshold margin, then oldest evidence). ``root``: the deepest
   hardware part, else the TEE evidence, else the deepest link; ``roots`` names them all and the
   keys the chain rests on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.trust.chain import MAX_LINKS, RecordInfo, TeeInfo, _cycles, parse_digest
from ledger.trust.graph import WALKED_KINDS
from ledger.trust.policy import TrustState, format_time, rank, worst
from ledger.trust.predicates import kind_of
from ledger.trust.fold import LeafFacts
from ledger.trust.judge import Judgement, judge

__all__ = ["MAX_LINKS", "chain_verdict", "judge_record", "parse_artifact", "reachable", "record_info", "records_of"]

Digest = tuple[str, str]
#: among records of equal verdict about one digest, which holds it up (lower first)
_KIND_ORDER = {"hardware-part": 0, "firmware-image": 1, "build": 2, "other": 3, "sbom": 4}


def record_info(facts: LeafFacts, tee: TeeInfo | None = None) -> RecordInfo:
    """The chain's view of an entry, from its leaf facts."""
    return RecordInfo(
        index=facts.index,
        integrated_time=facts.integrated_time,
        predicate_type=facts.predicate_type,
        subjects=facts.subjects,
        signers=tuple(sorted(set(facts.signers))),
        edges=facts.edges,
        tee=tee,
        notes=facts.notes,
    )


def reachable(artifact: Digest, records: Mapping[int, RecordInfo], *, cap: int = MAX_LINKS) -> set[int]:
    """The indexes of ``records`` reachable from the artifact through walked edges (the pure
    twin of the store's recursive query, for offline verification)."""
    by_digest: dict[Digest, list[int]] = {}
    for r in records.values():
        for alg, digest, _ in r.subjects:
            by_digest.setdefault((alg, digest), []).append(r.index)
    seen: set[int] = set()
    queue = deque([artifact])
    visited = {artifact}
    while queue and len(seen) < cap:
        digest = queue.popleft()
        for i in by_digest.get(digest, ()):
            if i in seen:
                continue
            seen.add(i)
            for kind, alg, value in records[i].edges:
                if kind in WALKED_KINDS and (alg, value) not in visited:
                    visited.add((alg, value))
                    queue.append((alg, value))
    return seen


def judge_record(state: TrustState, record: RecordInfo, *, as_of: int) -> Judgement:
    """One record on its own: a key event must be signed by the administrator key; any other
    record by keys whose grants cover it at its index and time (``ledger.trust.judge``)."""
    if kind_of(record.predicate_type) == "key-event":
        if state.root_key_id is not None and state.root_key_id in record.signers:
            return Judgement("trusted", (), (state.root_key_id,), ("administrator",), {"principals": ["administrator"], "k": 1, "n": 1})
        return Judgement("untrusted", ("a key event not signed by the ledger's administrator key",), (), ())
    return judge(
        state,
        predicate_type=record.predicate_type,
        subject_names=[name for _, _, name in record.subjects],
        key_ids=record.signers,
        time=record.integrated_time,
        as_of=as_of,
        index=record.index,
    )


def _tee_judgement(record: RecordInfo, state: TrustState, as_of: int) -> tuple[str, list[str], dict[str, Any]]:
    """The TEE evidence of a deployment: its stored appraisal, re-judged against the trust state
    (a TEE root revoked in the key history, or a non-vendor root not in it, condemns it)."""
    tee = record.tee
    if tee is None:
        return "untrusted", ["the ledger holds no appraisal of this deployment's evidence"], {}
    if tee.verdict != "accept":
        return "untrusted", list(tee.failed) or ["the appraisal did not accept it"], {}
    why = {"root": tee.root_name, "fingerprint": tee.root_fingerprint}
    root = state.keys.get(tee.root_fingerprint or "")
    if root is not None and root.is_tee_root:
        if root.revoked_index is not None and (record.index > root.revoked_index or record.integrated_time >= (root.compromised_since or 0)):
            return "untrusted", [
                f"TEE root {tee.root_name} ({tee.root_fingerprint}) was revoked by entry {root.revoked_index} "
                f"as compromised since {format_time(root.compromised_since)}"
            ], why
        if root.registered_index > record.index:
            return "untrusted", [f"TEE root {tee.root_fingerprint} was registered (entry {root.registered_index}) after the deployment"], why
        why["registered_index"] = root.registered_index
        dated = [g.review_by for g in root.grants if g.review_by is not None]
        if dated:
            why["review_by"] = format_time(min(dated))
            why["margin_seconds"] = min(dated) - as_of
            if all(g.stale_at(as_of) for g in root.grants):
                return "stale", [
                    f"TEE root {tee.root_name} ({tee.root_fingerprint}) is past its review-by date "
                    f"{format_time(max(dated))}: re-affirm it (provledger keys reaffirm)"
                ], why
        return "trusted", [], why
    if tee.evidence_type == "tpm":  # non-vendor roots count only through the key history
        return "untrusted", [
            f"TPM root {tee.root_name} ({tee.root_fingerprint}) is not in the ledger's key history "
            "(provledger keys add-tee-root / import-tee-roots)"
        ], why
    why["pinned"] = True  # a vendor root (AMD, Intel, AWS), pinned by fingerprint
    return "trusted", [], why


@dataclass
class _Node:
    """A record, judged."""

    record: RecordInfo | None
    own: str
    reasons: list[str]
    judgement: Judgement | None
    inputs: list[Any] = field(default_factory=list)  # digest keys (and ("tee", i) for deployments)
    combined: str = "untrusted"


def chain_verdict(
    artifact: Digest,
    records: Mapping[int, RecordInfo],
    state: TrustState,
    *,
    as_of_time: int,
    max_links: int = MAX_LINKS,
) -> dict[str, Any]:
    """The chain of trust JSON (GUIDE: ``{"artifact","verdict","weakest_link","root","links"}``
    plus ``roots`` and, per link, ``digest``, ``rests_on``, ``set_aside``, ``why``)."""
    by_digest: dict[Digest, list[int]] = {}
    for record in sorted(records.values(), key=lambda r: r.index):
        for alg, digest, _ in record.subjects:
            by_digest.setdefault((alg, digest), []).append(record.index)

    def is_deployment(i: int) -> bool:
        return kind_of(records[i].predicate_type) == "deployment"

    # 1. Walk: every record reachable (breadth first), each judged on its own.
    nodes: dict[Any, _Node] = {}
    depth: dict[Digest, int] = {artifact: 0}
    truncated = False
    queue: deque[Digest] = deque([artifact])
    deployments = [i for i in by_digest.get(artifact, ()) if is_deployment(i)]

    def add_record(i: int) -> bool:
        nonlocal truncated
        if i in nodes:
            return True
        if len(nodes) >= max_links:
            truncated = True
            return False
        r = records[i]
        j = judge_record(state, r, as_of=as_of_time)
        node = _Node(r, j.verdict, [*j.reasons, *getattr(r, "notes", ())], j)
        nodes[i] = node
        for kind, alg, value in r.edges:
            if kind not in WALKED_KINDS:
                continue
            d = (alg, value)
            node.inputs.append(d)
            if d not in depth:
                depth[d] = depth.get(r.subjects[0][:2], 0) + 1 if r.subjects else 1
                queue.append(d)
        node.inputs = list(dict.fromkeys(node.inputs))
        return True

    for i in deployments:
        add_record(i)
        nodes[i].inputs = list(dict.fromkeys([artifact, *nodes[i].inputs, ("tee", i)]))
        verdict, reasons, why = _tee_judgement(records[i], state, as_of_time)
        nodes[("tee", i)] = _Node(None, verdict, reasons, None)
        nodes[("tee", i)].judgement = Judgement(verdict, tuple(reasons), (), (), why)
    while queue:
        d = queue.popleft()
        for i in by_digest.get(d, ()):
            if not is_deployment(i) and not add_record(i):
                for n in nodes.values():
                    if n.record is not None and d in n.inputs and not any("not all of its inputs" in x for x in n.reasons):
                        n.reasons.append(f"not all of its inputs were walked: the chain has more than {max_links} links")

    # 2. Least fixpoint: combined = worst(own, inputs); a digest = best of its records.
    def holders(d: Any) -> list[Any]:
        if isinstance(d, tuple) and d and d[0] == "tee":
            return [d]
        return [i for i in by_digest.get(d, ()) if i in nodes and not is_deployment(i)]

    users: dict[Any, list[Any]] = {}
    for key, node in nodes.items():
        for d in node.inputs:
            users.setdefault(d, []).append(key)

    def digest_verdict(d: Any) -> str:
        held = holders(d)
        if not held:
            return "missing"
        return min((nodes[h].combined for h in held), key=rank)

    for key, node in nodes.items():
        if node.record is None:
            node.combined = node.own
    work = deque(k for k, n in nodes.items() if n.record is not None)
    queued = set(work)
    while work:
        key = work.popleft()
        queued.discard(key)
        node = nodes[key]
        new = worst([node.own, *(digest_verdict(d) for d in node.inputs)])
        if rank(new) < rank(node.combined):
            node.combined = new
            for alg, value, _ in node.record.subjects:  # type: ignore[union-attr]
                for user in users.get((alg, value), ()):
                    if user not in queued:
                        queued.add(user)
                        work.append(user)

    # 3. Cycles: members that the fixpoint could not ground say why.
    graph = {k: [h for d in n.inputs for h in holders(d) if h in nodes] for k, n in nodes.items()}
    for component in _cycles(list(nodes), graph):
        members = sorted(k for k in component if isinstance(k, int))
        for k in component:
            if nodes[k].combined != "trusted":
                nodes[k].reasons.append(f"part of a dependency cycle through entries {members}: no bottom turtle, no trust")
                nodes[k].combined = "untrusted"

    # 4. The links the verdict rests on.
    def best(d: Digest) -> int | None:
        held = holders(d)
        if not held:
            return None
        return min(held, key=lambda h: (rank(nodes[h].combined), _KIND_ORDER.get(kind_of(records[h].predicate_type), 3), -h))

    links: dict[Any, dict[str, Any]] = {}
    order: list[Any] = []
    link_depth: dict[Any, int] = {}

    def subject_of(d: Any) -> str:
        return f"{d[0]}:{d[1]}"

    def make_link(d: Any, level: int, cause: str | None) -> Any:
        """The link of digest ``d`` (or a TEE node): its key, created once."""
        if isinstance(d, tuple) and d and d[0] == "tee":
            key = d
        else:
            chosen = best(d)
            key = chosen if chosen is not None else ("missing", d)
        if key in links:
            return key
        link_depth[key] = level
        order.append(key)
        if isinstance(key, tuple) and key[0] == "missing":
            links[key] = {
                "index": None, "kind": "missing", "subject": subject_of(d), "signer": None, "key_id": None,
                "verdict": "missing", "reasons": [cause or f"no record in the ledger has subject {subject_of(d)}"],
                "depends_on": [], "digest": subject_of(d), "rests_on": None, "set_aside": [], "why": {},
            }
            return key
        node = nodes[key]
        if isinstance(key, tuple):  # tee evidence
            tee = records[key[1]].tee
            host = f"{tee.evidence_type} evidence of host {tee.host_id}" if tee else "TEE evidence"
            links[key] = {
                "index": None, "kind": "tee-evidence", "subject": f"{host} (deployment entry {key[1]})",
                "signer": tee.root_name if tee else None, "key_id": tee.root_fingerprint if tee else None,
                "verdict": _shown(node), "reasons": list(node.reasons), "depends_on": [], "digest": None,
                "rests_on": None, "set_aside": [], "why": dict(node.judgement.why) if node.judgement else {},
            }
            return key
        record = records[key]
        j = node.judgement
        assert j is not None
        counted = j.key_ids or record.signers
        principals = j.principals or tuple(dict.fromkeys(state.keys[k].principal for k in record.signers if k in state.keys))
        reasons = list(node.reasons)
        set_aside = []
        if not (isinstance(d, tuple) and d and d[0] == "tee"):
            for other in holders(d):
                if other == key:
                    continue
                o = nodes[other]
                set_aside.append({"index": other, "kind": kind_of(records[other].predicate_type), "verdict": o.combined, "reasons": list(o.reasons)})
                if rank(o.combined) > rank(node.combined) or o.combined != "trusted":
                    reasons.append(
                        f"entry {other} about the same digest is {o.combined} and set aside"
                        + (f" ({o.reasons[0]})" if o.reasons else "")
                    )
        links[key] = {
            "index": key, "kind": kind_of(record.predicate_type),
            "subject": subject_of(d) if not isinstance(d, tuple) or d[0] != "tee" else "",
            "signer": ", ".join(principals) if principals else None,
            "key_id": counted[0] if counted else None,
            "verdict": _shown(node), "reasons": reasons, "depends_on": [], "digest": subject_of(d),
            "rests_on": key, "set_aside": set_aside, "why": dict(j.why), "own_verdict": node.own,
            "integrated_time": record.integrated_time,
        }
        if kind_of(record.predicate_type) == "deployment":
            links[key]["subject"] = subject_of(artifact)
        return key

    walk: deque[tuple[Any, int]] = deque()
    top = make_link(
        artifact, 0,
        f"no build record in the ledger has subject {subject_of(artifact)} (deployed by entry {deployments[0]})" if deployments else None,
    )
    walk.append((top, 0))
    for i in deployments:
        walk.append((_deployment_link(i, nodes[i], records, state, links, order, link_depth), 0))
    done: set[Any] = set()
    while walk:
        key, level = walk.popleft()
        if key in done or not isinstance(key, int):
            continue
        done.add(key)
        node = nodes[key]
        below = []
        for d in node.inputs:
            if d == artifact and kind_of(records[key].predicate_type) == "deployment":
                child = top
            else:
                cause = None
                if not isinstance(d, tuple) or d[0] != "tee":
                    kinds = [k for k, a, v in records[key].edges if (a, v) == d]
                    cause = f"no record in the ledger has subject {subject_of(d)} ({kinds[0] if kinds else 'input'} of entry {key})"
                    if kind_of(records[key].predicate_type) == "deployment" and d == artifact:
                        cause = f"no build record in the ledger has subject {subject_of(d)} (deployed by entry {key})"
                if len(links) >= max_links and not _known(d, links, best):
                    note = f"not all of its inputs were walked: the chain has more than {max_links} links"
                    if note not in links[key]["reasons"]:
                        links[key]["reasons"].append(note)
                    continue
                child = make_link(d, level + 1, cause)
            below.append(child)
            walk.append((child, level + 1))
            if links[child]["verdict"] == "untrusted" and node.own != "untrusted":
                what = links[child]["index"] if links[child]["index"] is not None else links[child]["subject"]
                note = f"depends on untrusted entry {what}: rebuild from the layer below"
                if note not in links[key]["reasons"]:
                    links[key]["reasons"].append(note)
        links[key]["depends_on"] = sorted({links[b]["index"] for b in below if links[b]["index"] is not None})
        links[key]["below"] = below

    ordered = [links[k] for k in order]
    verdict = worst(l["verdict"] for l in ordered)

    def deepest(link_key: Any) -> tuple[int, int]:
        i = links[link_key]["index"]
        return (-link_depth[link_key], i if i is not None else 1 << 62)

    if verdict != "trusted":
        candidates = [k for k in order if links[k]["verdict"] == verdict and links[k].get("own_verdict", links[k]["verdict"]) == verdict]
        candidates = candidates or [k for k in order if links[k]["verdict"] == verdict]
        weakest = min(candidates, key=deepest)
    else:
        def margin(k: Any) -> tuple[float, float, int]:
            why = links[k]["why"] or {}
            m = why.get("margin_seconds")
            t = why.get("threshold_margin")
            return (m if m is not None else float("inf"), t if t is not None else float("inf"), links[k].get("integrated_time", 1 << 62))

        weakest = min(order, key=margin)
        why = links[weakest]["why"] or {}
        links[weakest]["weakest_because"] = _margin_text(why)
    parts = [k for k in order if links[k]["kind"] == "hardware-part"] or [k for k in order if links[k]["kind"] == "tee-evidence"]
    root = min(parts or order, key=deepest)
    keys = sorted({s for k in order for s in ((links[k]["why"] or {}).get("signers") or ())})
    roots = {
        "hardware": [links[k]["index"] for k in order if links[k]["kind"] == "hardware-part" and not links[k]["depends_on"]],
        "tee": [
            {"name": links[k]["signer"], "fingerprint": links[k]["key_id"], "verdict": links[k]["verdict"]}
            for k in order if links[k]["kind"] == "tee-evidence"
        ],
        "keys": keys,
    }
    for link in ordered:
        link.pop("below", None)
        link.pop("integrated_time", None)
        link["stale"] = link["verdict"] == "stale"
    return {
        "artifact": f"{artifact[0]}:{artifact[1]}",
        "verdict": verdict,
        "weakest_link": links[weakest],
        "root": links[root],
        "roots": roots,
        "as_of": format_time(as_of_time),
        "links": ordered,
    }


def _shown(node: _Node) -> str:
    """A link's verdict: its record's own, or untrusted when it rests on something untrusted
    (stale and missing inputs are links of their own and count in the chain's verdict there)."""
    return "untrusted" if node.combined == "untrusted" else node.own


def _known(d: Any, links: Mapping[Any, Any], best: Any) -> bool:
    if isinstance(d, tuple) and d and d[0] == "tee":
        return d in links
    chosen = best(d)
    return (chosen if chosen is not None else ("missing", d)) in links


def _margin_text(why: Mapping[str, Any]) -> str:
    parts = []
    if why.get("review_by"):
        parts.append(f"review-by {why['review_by']}")
    if why.get("not_after"):
        parts.append(f"not-after {why['not_after']}")
    if why.get("k") is not None and why.get("n") is not None:
        parts.append(f"{why['k']} of {why['n']} principals")
    return "least margin: " + (", ".join(parts) if parts else "no deadline (oldest evidence)")


def _deployment_link(
    i: int, node: _Node, records: Mapping[int, RecordInfo], state: TrustState,
    links: dict[Any, dict[str, Any]], order: list[Any], link_depth: dict[Any, int],
) -> int:
    record = records[i]
    j = node.judgement
    assert j is not None
    principals = j.principals or tuple(dict.fromkeys(state.keys[k].principal for k in record.signers if k in state.keys))
    counted = j.key_ids or record.signers
    link_depth[i] = 0
    order.append(i)
    links[i] = {
        "index": i, "kind": "deployment",
        "subject": f"{record.subjects[0][0]}:{record.subjects[0][1]}" if record.subjects else "",
        "signer": ", ".join(principals) if principals else None, "key_id": counted[0] if counted else None,
        "verdict": _shown(node), "reasons": list(node.reasons), "depends_on": [],
        "digest": f"{record.subjects[0][0]}:{record.subjects[0][1]}" if record.subjects else None,
        "rests_on": i, "set_aside": [], "why": dict(j.why), "own_verdict": node.own,
        "integrated_time": record.integrated_time,
    }
    return i


def parse_artifact(text: str) -> Digest:
    """``sha256:<hex>`` → (algorithm, digest) (MalformedError otherwise)."""
    return parse_digest(text)


def records_of(facts: Iterable[LeafFacts], tees: Mapping[int, TeeInfo] | None = None) -> dict[int, RecordInfo]:
    """RecordInfo by index from leaf facts (and stored appraisals, by deployment index)."""
    tees = tees or {}
    return {f.index: record_info(f, tees.get(f.index)) for f in facts}
