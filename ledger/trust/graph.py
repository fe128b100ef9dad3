"""The edges a record names: what each link of a chain of trust depends on, by digest.

- SLSA v1 ``buildDefinition.resolvedDependencies`` and v0.2 ``materials`` → ``input`` edges;
- hardware part ``children`` → ``child`` edges;
- firmware image ``hardware`` → ``hardware`` edges, and ``targets`` (hardware models) →
  ``target`` edges with the pseudo-algorithm ``model`` (searchable, not walked: a model is not
  an artifact);
- CycloneDX components (nested too) and SPDX 2 packages / SPDX 3 software packages that carry
  digests → ``component`` edges;
- a deployment → ``firmware`` edges to the firmware image its TEE evidence's measurement matched.
  That edge is not in the predicate: the ledger finds it at submission
  (``ledger.services.deployment``), so ``edges_of`` never yields it.

SBOM parsing is lenient on purpose: anything that is not where it should be is skipped, never
refused (real-world SBOMs break every strict parser somewhere). A record's edges to its own
subjects are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from ledger.trust.predicates import (
    FIRMWARE_IMAGE,
    HARDWARE_PART,
    SLSA_V02,
    SLSA_V1,
    is_cyclonedx,
    is_spdx,
)

__all__ = ["EDGE_KINDS", "MAX_EDGES", "WALKED_KINDS", "Edge", "edges_of", "normalise_algorithm"]

#: (kind, algorithm, lowercase digest)
Edge = tuple[str, str, str]

EDGE_KINDS = ("input", "child", "hardware", "component", "target", "firmware")
#: the edge kinds a chain walk follows (``target`` names a model, not an artifact)
WALKED_KINDS = frozenset({"input", "child", "hardware", "component", "firmware"})
#: edges kept per record; an SBOM with more components is cut here (the first ones are kept)
MAX_EDGES = 20_000
#: SBOM nesting followed at most this deep
MAX_DEPTH = 32

_HEX = re.compile(r"^[0-9a-f]+$")
_HEX_LENGTHS = {
    "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128,
    "sha3-256": 64, "sha3-384": 96, "sha3-512": 128, "gitCommit": None,
}


def normalise_algorithm(name: str) -> str | None:
    """An SBOM's hash algorithm name ('SHA-256', 'SHA256', 'sha3-512') as an in-toto digest key,
    or None for algorithms too weak or unknown to identify an artifact (MD5, …)."""
    if name == "gitCommit":
        return name
    n = name.strip().lower().replace("_", "-")
    if n.startswith("sha3-"):
        key = n
    elif n.startswith("sha-"):
        key = "sha" + n[4:]
    else:
        key = n
    return key if key in _HEX_LENGTHS else None


def _digest_pairs(digest: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(digest, dict):
        return
    for alg, value in digest.items():
        if not isinstance(alg, str) or not isinstance(value, str):
            continue
        key = alg if alg in _HEX_LENGTHS else normalise_algorithm(alg)
        if key is None:
            continue
        v = value.strip().lower()
        size = _HEX_LENGTHS[key]
        if _HEX.match(v) and (size is None or len(v) == size):
            yield key, v


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _slsa_edges(predicate_type: str, predicate: dict[str, Any]) -> Iterator[Edge]:
    if predicate_type == SLSA_V1:
        definition = predicate.get("buildDefinition")
        deps = _listed(definition.get("resolvedDependencies")) if isinstance(definition, dict) else []
    else:
        deps = _listed(predicate.get("materials"))
    for dep in deps:
        if isinstance(dep, dict):
            for alg, value in _digest_pairs(dep.get("digest")):
                yield "input", alg, value


def _cyclonedx_edges(bom: dict[str, Any]) -> Iterator[Edge]:
    stack: list[tuple[Any, int]] = [(c, 0) for c in reversed(_listed(bom.get("components")))]
    while stack:
        component, depth = stack.pop()
        if not isinstance(component, dict):
            continue
        for h in _listed(component.get("hashes")):
            if isinstance(h, dict) and isinstance(h.get("alg"), str):
                yield from (("component", a, v) for a, v in _digest_pairs({h["alg"]: h.get("content")}))
        if depth < MAX_DEPTH:
            stack.extend((c, depth + 1) for c in reversed(_listed(component.get("components"))))


def _spdx_edges(doc: dict[str, Any]) -> Iterator[Edge]:
    # SPDX 2.x: packages[].checksums[{algorithm, checksumValue}]
    for package in _listed(doc.get("packages")):
        if isinstance(package, dict):
            for c in _listed(package.get("checksums")):
                if isinstance(c, dict) and isinstance(c.get("algorithm"), str):
                    yield from (("component", a, v) for a, v in _digest_pairs({c["algorithm"]: c.get("checksumValue")}))
    # SPDX 3: a JSON-LD @graph (or "element") of elements; packages carry verifiedUsing hashes
    for element in _listed(doc.get("@graph")) + _listed(doc.get("element")):
        if not isinstance(element, dict):
            continue
        kind = str(element.get("type") or element.get("@type") or "")
        if not kind.endswith("Package") and not kind.endswith("File"):
            continue
        for h in _listed(element.get("verifiedUsing")):
            if isinstance(h, dict) and isinstance(h.get("algorithm"), str):
                yield from (("component", a, v) for a, v in _digest_pairs({h["algorithm"]: h.get("hashValue")}))


def _owned_edges(predicate_type: str, predicate: dict[str, Any]) -> Iterator[Edge]:
    if predicate_type == HARDWARE_PART:
        for child in _listed(predicate.get("children")):
            if isinstance(child, dict):
                yield from (("child", a, v) for a, v in _digest_pairs(child.get("digest")))
    elif predicate_type == FIRMWARE_IMAGE:
        for hw in _listed(predicate.get("hardware")):
            if isinstance(hw, dict):
                yield from (("hardware", a, v) for a, v in _digest_pairs(hw.get("digest")))
        for model in _listed(predicate.get("targets")):
            if isinstance(model, str) and model:
                yield "target", "model", model[:256]


def edges_of(predicate_type: str, predicate: Any, subjects: Iterable[tuple[str, str]] = ()) -> tuple[Edge, ...]:
    """The distinct edges a record names, in document order, without edges to its own subjects."""
    if not isinstance(predicate, dict):
        return ()
    if predicate_type in (SLSA_V1, SLSA_V02):
        found: Iterable[Edge] = _slsa_edges(predicate_type, predicate)
    elif is_cyclonedx(predicate_type):
        found = _cyclonedx_edges(predicate)
    elif is_spdx(predicate_type):
        found = _spdx_edges(predicate)
    else:
        found = _owned_edges(predicate_type, predicate)
    own = {(alg, value.lower()) for alg, value in subjects}
    seen: set[Edge] = set()
    out: list[Edge] = []
    for edge in found:
        if edge in seen or (edge[1], edge[2]) in own:
            continue
        seen.add(edge)
        out.append(edge)
        if len(out) >= MAX_EDGES:
            break
    return tuple(out)
