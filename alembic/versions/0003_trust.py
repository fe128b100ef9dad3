"""Provenance and trust: entry edges and signers (append-only), the root of trust, and the
materialised trust state (keys, grants, thresholds) that key-event entries build.

Entries appended before this revision get their edges and signers back-filled from their leaf
data. Keys registered in the old ``signer_keys`` table are not carried over: trust now comes
only from key-event entries signed by the administrator key (fail closed) — register them
again with ``provledger keys add``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import base64
import json
import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("entry_edges", "entry_signers")
BACKFILL_CHUNK = 2000


def upgrade() -> None:
    op.create_table(
        "entry_edges",
        sa.Column("entry_idx", sa.BigInteger, sa.ForeignKey("entries.idx", name="fk_entry_edges_entry_idx_entries"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(256), nullable=False),
    )
    op.create_index("ix_entry_edges_digest", "entry_edges", ["algorithm", "digest", "entry_idx"])
    op.create_table(
        "entry_signers",
        sa.Column("entry_idx", sa.BigInteger, sa.ForeignKey("entries.idx", name="fk_entry_signers_entry_idx_entries"), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_entry_signers_key_id", "entry_signers", ["key_id", "entry_idx"])
    op.create_table(
        "trust_root",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "trust_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("principal", sa.String(255), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("grants", sa.Text, nullable=False),
        sa.Column("registered_index", sa.BigInteger, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
        sa.Column("last_event_index", sa.BigInteger, nullable=False),
        sa.Column("revoked_index", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("compromised_since", sa.BigInteger, nullable=True),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("retired_at", sa.BigInteger, nullable=True),
        sa.Column("replaces", sa.String(64), nullable=True),
    )
    op.create_index("ix_trust_keys_principal", "trust_keys", ["principal"])
    op.create_table(
        "trust_thresholds",
        sa.Column("pattern", sa.String(512), primary_key=True),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("set_index", sa.BigInteger, nullable=False),
    )
    _backfill()
    _install_append_only_triggers()


def _backfill() -> None:
    """Edges and signers of the entries appended before this revision."""
    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT idx, data FROM entries WHERE idx > :after ORDER BY idx LIMIT :n"),
            {"after": after, "n": BACKFILL_CHUNK},
        ).all()
        if not rows:
            return
        edges, signers = [], []
        for idx, data in rows:
            leaf = json.loads(bytes(data))
            for s in leaf.get("signers") or ():
                signers.append({"entry_idx": idx, "key_id": s["key_id"]})
            try:
                statement = json.loads(base64.b64decode(leaf["envelope"]["payload"]))
                subjects = [(a, v) for s in statement.get("subject", []) for a, v in (s.get("digest") or {}).items()]
                found = edges_of(statement.get("predicateType", ""), statement.get("predicate"), subjects)
            except (ValueError, KeyError, TypeError, AttributeError):
                found = ()
            edges.extend(
                {"entry_idx": idx, "position": i, "kind": k, "algorithm": a, "digest": d}
                for i, (k, a, d) in enumerate(found)
            )
        if signers:
            conn.execute(sa.text("INSERT INTO entry_signers (entry_idx, key_id) VALUES (:entry_idx, :key_id)"), signers)
        if edges:
            conn.execute(
                sa.text(
                    "INSERT INTO entry_edges (entry_idx, position, kind, algorithm, digest) "
                    "VALUES (:entry_idx, :position, :kind, :algorithm, :digest)"
                ),
                edges,
            )
        after = rows[-1][0]


def _install_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )
        elif dialect == "postgresql":
            # provledger_refuse_change() is the function of the first migration
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION provledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION provledger_refuse_change()"
            )
        else:  # pragma: no cover
            raise RuntimeError(f"unsupported database {dialect}")


def downgrade() -> None:
    # Everything here is derived from the entries (which stay): an upgrade rebuilds edges and
    # signers; the trust state must then be re-registered (the key events are still entries).
    for table in ("trust_thresholds", "trust_keys", "trust_root", "entry_signers", "entry_edges"):
        op.drop_table(table)


# --- frozen copy of the edge extraction as it stood at this revision (the graph module of the
# provenance package, since moved to ledger.trust.graph). A migration is a snapshot: it must not
# change when that module does.
_SLSA_V1 = "https://slsa.dev/provenance/v1"
_SLSA_V02 = "https://slsa.dev/provenance/v0.2"
_CYCLONEDX = "https://cyclonedx.org/bom"
_SPDX = "https://spdx.dev/Document"
_HARDWARE_PART = "https://provenance-ledger.dev/hardware-part/v1"
_FIRMWARE_IMAGE = "https://provenance-ledger.dev/firmware-image/v1"
_MAX_EDGES = 20_000
_MAX_DEPTH = 32
_HEX = re.compile(r"^[0-9a-f]+$")
_HEX_LENGTHS = {
    "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128,
    "sha3-256": 64, "sha3-384": 96, "sha3-512": 128, "gitCommit": None,
}


def _normalise_algorithm(name):
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


def _digest_pairs(digest):
    if not isinstance(digest, dict):
        return
    for alg, value in digest.items():
        if not isinstance(alg, str) or not isinstance(value, str):
            continue
        key = alg if alg in _HEX_LENGTHS else _normalise_algorithm(alg)
        if key is None:
            continue
        v = value.strip().lower()
        size = _HEX_LENGTHS[key]
        if _HEX.match(v) and (size is None or len(v) == size):
            yield key, v


def _listed(value):
    return value if isinstance(value, list) else []


def _slsa_edges(predicate_type, predicate):
    if predicate_type == _SLSA_V1:
        definition = predicate.get("buildDefinition")
        deps = _listed(definition.get("resolvedDependencies")) if isinstance(definition, dict) else []
    else:
        deps = _listed(predicate.get("materials"))
    for dep in deps:
        if isinstance(dep, dict):
            for alg, value in _digest_pairs(dep.get("digest")):
                yield "input", alg, value


def _cyclonedx_edges(bom):
    stack = [(c, 0) for c in reversed(_listed(bom.get("components")))]
    while stack:
        component, depth = stack.pop()
        if not isinstance(component, dict):
            continue
        for h in _listed(component.get("hashes")):
            if isinstance(h, dict) and isinstance(h.get("alg"), str):
                yield from (("component", a, v) for a, v in _digest_pairs({h["alg"]: h.get("content")}))
        if depth < _MAX_DEPTH:
            stack.extend((c, depth + 1) for c in reversed(_listed(component.get("components"))))


def _spdx_edges(doc):
    for package in _listed(doc.get("packages")):
        if isinstance(package, dict):
            for c in _listed(package.get("checksums")):
                if isinstance(c, dict) and isinstance(c.get("algorithm"), str):
                    yield from (("component", a, v) for a, v in _digest_pairs({c["algorithm"]: c.get("checksumValue")}))
    for element in _listed(doc.get("@graph")) + _listed(doc.get("element")):
        if not isinstance(element, dict):
            continue
        kind = str(element.get("type") or element.get("@type") or "")
        if not kind.endswith("Package") and not kind.endswith("File"):
            continue
        for h in _listed(element.get("verifiedUsing")):
            if isinstance(h, dict) and isinstance(h.get("algorithm"), str):
                yield from (("component", a, v) for a, v in _digest_pairs({h["algorithm"]: h.get("hashValue")}))


def _owned_edges(predicate_type, predicate):
    if predicate_type == _HARDWARE_PART:
        for child in _listed(predicate.get("children")):
            if isinstance(child, dict):
                yield from (("child", a, v) for a, v in _digest_pairs(child.get("digest")))
    elif predicate_type == _FIRMWARE_IMAGE:
        for hw in _listed(predicate.get("hardware")):
            if isinstance(hw, dict):
                yield from (("hardware", a, v) for a, v in _digest_pairs(hw.get("digest")))
        for model in _listed(predicate.get("targets")):
            if isinstance(model, str) and model:
                yield "target", "model", model[:256]


def edges_of(predicate_type, predicate, subjects=()):
    """The distinct edges a record names, in document order, without edges to its own subjects."""
    if not isinstance(predicate, dict):
        return ()
    if predicate_type in (_SLSA_V1, _SLSA_V02):
        found = _slsa_edges(predicate_type, predicate)
    elif predicate_type == _CYCLONEDX or predicate_type.startswith(_CYCLONEDX + "/v1."):
        found = _cyclonedx_edges(predicate)
    elif predicate_type == _SPDX or predicate_type.startswith(_SPDX + "/v"):
        found = _spdx_edges(predicate)
    else:
        found = _owned_edges(predicate_type, predicate)
    own = {(alg, value.lower()) for alg, value in subjects}
    seen = set()
    out = []
    for edge in found:
        if edge in seen or (edge[1], edge[2]) in own:
            continue
        seen.add(edge)
        out.append(edge)
        if len(out) >= _MAX_EDGES:
            break
    return tuple(out)
