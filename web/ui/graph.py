"""Drawing a chain of trust as SVG, on the server.

The input is the chain JSON of ../shared/GUIDE.md (``{"artifact", "verdict", "weakest_link",
"root", "links": [{"index", "kind", "subject", "signer", "key_id", "verdict", "reasons",
"depends_on"}]}``). Each link is a node; ``depends_on`` gives the edges, drawn from a link down to
what it depends on, so the artifact sits at the top and the root ("bottom turtle") at the bottom.

Every text in the drawing came from a submitter and is escaped here (``markupsafe.escape``); the
drawing carries no script, no style attribute and no external reference, so the page's
Content-Security-Policy applies unchanged. Colour is never the only signal: each node also says
its verdict in words, and the weakest link and the root are labelled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

__all__ = ["MAX_NODES", "VERDICTS", "Layout", "default_reason", "edge_label", "layout", "render_svg"]

VERDICTS = ("trusted", "stale", "untrusted", "missing")
#: Larger chains are drawn up to this many links; the table beside the drawing lists them all.
MAX_NODES = 300

NODE_W, NODE_H = 250, 96
GAP_X, GAP_Y = 28, 76
MARGIN = 16
#: characters that fit one line of a node box: the name (12 px sans) and the digest (11 px mono)
NAME_CHARS = 28
SUBJECT_CHARS = 32
#: where an edge's label sits: this far down the gap below its source box, so never over a box
LABEL_DROP = 0.5

KIND_NAMES = {
    "build": "build",
    "software-build": "build",
    "input": "input",
    "material": "input",
    "sbom": "SBOM",
    "component": "component",
    "firmware": "firmware",
    "firmware-image": "firmware",
    "hardware": "hardware part",
    "hardware-part": "hardware part",
    "deployment": "deployment",
    "tee": "TEE evidence",
    "tee-evidence": "TEE evidence",
    "attestation": "TEE evidence",
    "key": "signer key",
    "key-event": "key event",
    "root": "root",
    "other": "record",
    "missing": "missing record",
}

#: (kind of the dependent link, kind of what it depends on) -> the edge's label
_EDGE_LABELS = {
    ("build", "input"): "built from",
    ("build", "build"): "built from",
    ("build", "sbom"): "described by",
    ("sbom", "component"): "contains",
    ("sbom", "build"): "describes",
    ("deployment", "tee"): "attested by",
    ("deployment", "build"): "runs",
    ("deployment", "firmware"): "runs on",
    ("tee", "firmware"): "measures",
    ("tee", "hardware"): "runs on",
    ("firmware", "hardware"): "targets",
    ("build", "firmware"): "built from",
    ("sbom", "firmware"): "contains",
    ("hardware", "hardware"): "contains part",
    ("build", "missing"): "built from",
    ("sbom", "missing"): "contains",
    ("hardware", "missing"): "contains part",
}


def _kind_key(kind: Any) -> str:
    """A normalised kind ('build', 'sbom', 'hardware', ...) for labels and CSS classes."""
    name = KIND_NAMES.get(str(kind or "").lower(), "")
    return {
        "hardware part": "hardware", "TEE evidence": "tee", "SBOM": "sbom", "signer key": "key", "key event": "key",
        "missing record": "missing", "record": "other",
    }.get(name, name) or "other"


def kind_name(kind: Any) -> str:
    return KIND_NAMES.get(str(kind or "").lower(), str(kind or "record"))


def edge_label(from_kind: Any, to_kind: Any) -> str:
    return _EDGE_LABELS.get((_kind_key(from_kind), _kind_key(to_kind)), "depends on")


def default_reason(link: Mapping[str, Any]) -> str:
    """What a link with no stated reason rests on, in words (older chains carry no reasons)."""
    v = verdict_of(link)
    signer = link.get("signer") or link.get("key_id")
    if v == "trusted" and signer:
        return f"signed by {signer} within its grant, as of its integration time"
    if v == "missing":
        return "no record about this digest in the ledger"
    return "no reason recorded"


def verdict_of(link: Mapping[str, Any]) -> str:
    v = str(link.get("verdict") or "missing")
    return v if v in VERDICTS else "untrusted"


@dataclass(frozen=True)
class PlacedNode:
    key: int
    link: Mapping[str, Any]
    level: int
    x: int
    y: int
    weakest: bool
    root: bool


@dataclass(frozen=True)
class Layout:
    nodes: list[PlacedNode]
    #: (from node key, to node key, label)
    edges: list[tuple[int, int, str]]
    width: int
    height: int
    truncated: int


def _same_link(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    if not isinstance(a, Mapping):
        return False
    if a.get("index") is not None:
        return a.get("index") == b.get("index") and a.get("subject") == b.get("subject")
    return a.get("subject") == b.get("subject") and a.get("kind") == b.get("kind")


_DEPLOYMENT_ENTRY = re.compile(r"deployment entry (\d+)")


def _attach_tee_evidence(links: Sequence[Mapping[str, Any]], deps: dict[int, list[int]]) -> None:
    """Hang each TEE-evidence link (which has no entry of its own) under the deployment it
    attests, so it is drawn connected: by its ``deployment`` field, else by the deployment entry
    its subject names, else under the chain's only deployment."""
    deployments = {l.get("index"): k for k, l in enumerate(links) if _kind_key(l.get("kind")) == "deployment"}
    for key, link in enumerate(links):
        if _kind_key(link.get("kind")) != "tee" or any(key in ts for ts in deps.values()):
            continue
        owner = link.get("deployment")
        if owner is None:
            found = _DEPLOYMENT_ENTRY.search(str(link.get("subject") or ""))
            owner = int(found.group(1)) if found else None
        source = deployments.get(owner)
        if source is None and len(deployments) == 1:
            source = next(iter(deployments.values()))
        if source is not None and source != key:
            deps[source].append(key)


def layout(chain: Mapping[str, Any], *, max_nodes: int = MAX_NODES) -> Layout:
    """Place links in levels: a link sits one level below the deepest link that depends on it.

    Cycles and diamonds are fine: edges that close a cycle are kept for drawing but ignored for
    levelling, and a link depended on twice is drawn once.
    """
    all_links: Sequence[Mapping[str, Any]] = [l for l in chain.get("links") or [] if isinstance(l, Mapping)]
    links = list(all_links[:max_nodes])
    by_index: dict[Any, int] = {}
    for key, link in enumerate(links):
        if link.get("index") is not None:
            by_index.setdefault(link.get("index"), key)
    deps: dict[int, list[int]] = {}
    for key, link in enumerate(links):
        targets = []
        for d in link.get("depends_on") or []:
            t = by_index.get(d)
            if t is not None and t != key and t not in targets:
                targets.append(t)
        deps[key] = targets
    _attach_tee_evidence(links, deps)

    # Depth-first from the links nothing depends on (then any left over, e.g. a pure cycle),
    # keeping only edges that do not close a cycle.
    depended = {t for ts in deps.values() for t in ts}
    starts = [k for k in range(len(links)) if k not in depended] + list(range(len(links)))
    state: dict[int, int] = {}  # 1 on the stack, 2 done
    order: list[int] = []
    dag: dict[int, list[int]] = {k: [] for k in range(len(links))}
    for start in starts:
        if start in state:
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, i = stack.pop()
            if i < len(deps[node]):
                stack.append((node, i + 1))
                t = deps[node][i]
                if state.get(t) == 1:
                    continue  # closes a cycle
                dag[node].append(t)
                if t not in state:
                    state[t] = 1
                    stack.append((t, 0))
            else:
                state[node] = 2
                order.append(node)
    level = {k: 0 for k in range(len(links))}
    for node in reversed(order):  # dependents before what they depend on
        for t in dag[node]:
            level[t] = max(level[t], level[node] + 1)

    rows: dict[int, list[int]] = {}
    for k in sorted(level, key=lambda k: (level[k], k)):
        rows.setdefault(level[k], []).append(k)
    # One barycentre pass: order each row by where its dependents sit, to uncross edges.
    position: dict[int, float] = {}
    for lvl in sorted(rows):
        parents: dict[int, list[float]] = {}
        for p, ts in dag.items():
            for t in ts:
                if p in position:
                    parents.setdefault(t, []).append(position[p])
        rows[lvl].sort(key=lambda k: (sum(parents[k]) / len(parents[k])) if k in parents else float(k))
        for i, k in enumerate(rows[lvl]):
            position[k] = i
    widest = max((len(r) for r in rows.values()), default=1)
    width = 2 * MARGIN + widest * NODE_W + (widest - 1) * GAP_X
    height = 2 * MARGIN + len(rows) * NODE_H + max(len(rows) - 1, 0) * GAP_Y
    weakest, root = chain.get("weakest_link"), chain.get("root")
    placed = []
    for lvl, keys in rows.items():
        row_w = len(keys) * NODE_W + (len(keys) - 1) * GAP_X
        x0 = (width - row_w) // 2
        for i, k in enumerate(keys):
            link = links[k]
            placed.append(
                PlacedNode(
                    key=k,
                    link=link,
                    level=lvl,
                    x=x0 + i * (NODE_W + GAP_X),
                    y=MARGIN + lvl * (NODE_H + GAP_Y),
                    weakest=_same_link(weakest, link),
                    root=_same_link(root, link),
                )
            )
    placed.sort(key=lambda n: n.key)
    edges = [(k, t, edge_label(links[k].get("kind"), links[t].get("kind"))) for k in range(len(links)) for t in deps[k]]
    return Layout(placed, edges, width, height, max(len(all_links) - len(links), 0))


def _looks_like_digest(text: Any) -> bool:
    algorithm, _, value = str(text or "").partition(":")
    return bool(algorithm) and len(value) >= 8 and all(c in "0123456789abcdef" for c in value.lower())


def _short(text: Any, limit: int = SUBJECT_CHARS) -> str:
    s = str(text if text is not None else "")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def render_svg(chain: Mapping[str, Any], *, title_id: str = "chain-graph-title") -> Markup:
    """The chain as an inline ``<svg>`` element (escaped, script-free)."""
    placed = layout(chain)
    nodes = {n.key: n for n in placed.nodes}
    artifact = escape(str(chain.get("artifact") or ""))
    verdict = escape(verdict_of(chain))
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chain-graph" role="img" '
        f'aria-labelledby="{title_id} {title_id}-desc" viewBox="0 0 {placed.width} {placed.height}" '
        f'width="{placed.width}" height="{placed.height}">',
        f'<title id="{title_id}">Chain of trust of {artifact}: {verdict}</title>',
        f'<desc id="{title_id}-desc">{len(placed.nodes)} links; each box names its kind, subject, '
        f"entry index and verdict. The table below lists the same links.</desc>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>',
    ]
    labels: list[str] = []
    for source, target, label in placed.edges:
        a, b = nodes[source], nodes[target]
        x1, y1 = a.x + NODE_W // 2, a.y + NODE_H
        x2, y2 = b.x + NODE_W // 2, b.y
        if b.level <= a.level:  # an edge that closes a cycle (or runs sideways): go around
            x1, y1, x2, y2 = a.x + NODE_W, a.y + NODE_H // 2, b.x + NODE_W, b.y + NODE_H // 2
            lx, ly = x1 + 8, (y1 + y2) // 2
            anchor = "start"
        else:
            # in the gap just below the source box, on the line: boxes never sit there
            ly = y1 + int(GAP_Y * LABEL_DROP)
            lx = x1 + (x2 - x1) * (ly - y1) // max(y2 - y1, 1)
            anchor = "middle"
        out.append(
            f'<g class="edge"><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" marker-end="url(#arrow)"/></g>'
        )
        labels.append(f'<text x="{lx}" y="{ly + 4}" class="edge-label" text-anchor="{anchor}">{escape(label)}</text>')
    for n in placed.nodes:
        link = n.link
        v = verdict_of(link)
        classes = ["node", f"verdict-{v}", f"kind-{_kind_key(link.get('kind'))}"]
        tags = [v.upper()]
        if n.weakest:
            classes.append("weakest")
            tags.append("WEAKEST LINK")
        if n.root:
            classes.append("root")
            tags.append("ROOT")
        index = link.get("index")
        heading = kind_name(link.get("kind")) + (f" #{index}" if isinstance(index, int) else "")
        subject = link.get("subject")
        name = link.get("name")
        version = link.get("version")
        if name and version and str(version) not in str(name):
            name = f"{name} {version}"
        if not name and not _looks_like_digest(subject):  # e.g. TEE evidence: its subject is words
            name, subject = subject, ""
        signer = link.get("signer") or link.get("key_id") or "no signer"
        tooltip = f"{heading}: {name + ' — ' if name else ''}{subject} — signed by {signer} — {v}"
        reasons = link.get("reasons") or []
        if reasons:
            tooltip += " — " + "; ".join(str(r) for r in reasons[:5])
        shape = f'<rect x="{n.x}" y="{n.y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
        if n.root:
            shape += f'<rect class="root-ring" x="{n.x + 4}" y="{n.y + 4}" width="{NODE_W - 8}" height="{NODE_H - 8}" rx="4"/>'
        texts = [
            (20, "node-kind", heading),
            (42, "node-name", _short(name or "(no name)", NAME_CHARS)),
            (62, "node-subject", _short(subject)),
            (84, "node-verdict", " · ".join(tags)),
        ]
        body = "".join(
            f'<text x="{n.x + 10}" y="{n.y + dy}" class="{cls}">{escape(text)}</text>' for dy, cls, text in texts
        )
        anchor = f"#link-{index}" if isinstance(index, int) else f"#link-k{n.key}"
        out.append(
            f'<a href="{escape(anchor)}" class="{" ".join(classes)}"><title>{escape(tooltip)}</title>{shape}{body}</a>'
        )
    out.append(f'<g class="edge-labels">{"".join(labels)}</g>')
    out.append("</svg>")
    return Markup("".join(out))
