"""The server's chain of trust and the offline verifier's are one verdict, link for link.

The project's rule: a verdict is computed once, by pure code. ``ledger.services.chain.chain``
(the server, reading its tables) and ``verify_verdict_bundle(...).chain`` (offline, from a
verdict bundle's leaf bytes alone) must return the same chain dict for every artifact, as of
every entry, at every time of judging.

Every test here builds a ledger through the ordinary services (key events signed by the admin
key, records through the append path) and then compares the two chains for *every* sha256
digest that appears as a subject of a record, as of the current checkpoint (at several
``now``) and as of historical entries around every key event (before and after it).

Covered: grants with predicate-type and subject globs, ``not_after`` and ``review_by`` (stale
verdicts, a ``now`` past review-by, re-affirmation), revocation with and without
``compromised_since``, rotation, k-of-n thresholds (raised, then lowered: the history counts),
records signed by several keys (two keys of one principal), re-attested digests (set aside),
SBOM components, missing inputs, a dependency cycle, a seeded random sequence of all of those,
and deployments with SEV-SNP and TPM evidence under recorded TEE policies, firmware-signer and
TPM-root revocation and re-affirmation, with and without the workers' re-judged rows (scripted,
and a seeded random sequence).

The divergences this comparison once found are kept as minimal regression cases in
``test_server_offline_regressions``, each with what differed and what the product now does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import LedgerError, NotFoundError
from ledger.records.keys import PrivateKey, generate_private_key
from ledger.services import chain as chain_service
from ledger.services import registry
from ledger.services.append import Appended
from ledger.trust.bundle_verify import verify_verdict_bundle
from ledger.trust.policy import Grant
from ledger.trust.predicates import (
    CYCLONEDX,
    DEPLOYMENT,
    FIRMWARE_IMAGE,
    HARDWARE_PART,
    KEY_EVENT,
    SLSA_V02,
    SLSA_V1,
)
from tests.deployment import helpers as h
from tests.provenance import helpers as prov
from tests.provenance.helpers import Trust
from tests.unit.attestation.factories import SnpPki, TpmPki
from tests.verdict_bundle.helpers import bundle_doc, raw

# ------------------------------------------------------------------------------ comparing


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (paths, with both values), for a readable failure."""
    if type(a) is not type(b):
        return [f"{path or '.'}: server {a!r} != offline {b!r}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: server {a.get(k, '<absent>')!r} != offline {b.get(k, '<absent>')!r}")
            else:
                out += _diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: server has {len(a)} items, offline {len(b)}: server {a!r} != offline {b!r}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path or '.'}: server {a!r} != offline {b!r}"]


def both(store: Any, artifact: str, *, at: int | None = None, now: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(server chain, offline chain) of ``artifact`` as of entry ``at`` judged at ``now``; None
    when the ledger holds no record about it up to ``at`` (no bundle can be made: the server
    must then say ``missing``)."""
    with store.sessions() as session:
        server = chain_service.chain(session, artifact, at=at, now=now)
    try:
        doc = bundle_doc(store, artifact, at=at)
    except NotFoundError:
        assert server["verdict"] == "missing", (artifact, at, server["verdict"])
        return None
    offline = verify_verdict_bundle(raw(doc), artifact, store.log.vkey, at=at, now=now).chain
    return server, offline


def subject_digests(store: Any) -> list[str]:
    """Every sha256 digest that is a subject of a record (key events' too: key ids, threshold and
    TEE-policy digests), in index order."""
    with store.sessions() as session:
        rows = session.execute(
            text(
                "SELECT s.digest, MIN(s.entry_idx) AS first FROM entry_subjects s "
                "WHERE s.algorithm = 'sha256' GROUP BY s.digest ORDER BY first"
            ),
        ).all()
    return [f"sha256:{d}" for d, _ in rows]


def key_event_indexes(store: Any) -> list[int]:
    with store.sessions() as session:
        return [i for (i,) in session.execute(text("SELECT idx FROM entries WHERE predicate_type = :ke ORDER BY idx"), {"ke": KEY_EVENT})]


def around_key_events(store: Any) -> list[int]:
    """Historical indexes to judge at: each key event, the entry before and after it, and the
    last entry."""
    size = store.size()
    out = {size - 1}
    for i in key_event_indexes(store):
        out |= {i - 1, i, i + 1}
    return sorted(i for i in out if 0 <= i < size)


def assert_agree(
    store: Any, *, nows: Sequence[int], ats: Iterable[int] = (), artifacts: Sequence[str] | None = None
) -> dict[str, int]:
    """Compare server and offline for every artifact, as of the checkpoint at each ``now`` and as
    of each ``at``; fail listing every disagreement. Returns counts of verdicts seen (to check a
    scenario really exercised what it meant to)."""
    artifacts = subject_digests(store) if artifacts is None else list(artifacts)
    cases: list[tuple[int | None, int]] = [(None, n) for n in nows] + [(a, nows[0]) for a in ats]
    problems: list[str] = []
    seen: dict[str, int] = {}
    for artifact in artifacts:
        for at, now in cases:
            pair = both(store, artifact, at=at, now=now)
            if pair is None:
                continue
            server, offline = pair
            for link in server["links"]:
                seen[link["verdict"]] = seen.get(link["verdict"], 0) + 1
            seen["chain:" + server["verdict"]] = seen.get("chain:" + server["verdict"], 0) + 1
            if server != offline:
                problems.append(f"{artifact} at={at} now={now}:\n    " + "\n    ".join(_diff(server, offline)[:12]))
    assert not problems, f"{len(problems)} server/offline disagreements:\n" + "\n".join(problems[:10])
    return seen


# ------------------------------------------------------------------------------ records


def build_predicate(inputs: Sequence[str], *, salt: str = "") -> dict[str, Any]:
    return {
        "buildDefinition": {
            "buildType": "https://ci.example/t", "externalParameters": {"salt": salt},
            "resolvedDependencies": [{"uri": f"dep-{i}", "digest": {"sha256": d}} for i, d in enumerate(inputs)],
        },
        "runDetails": {"builder": {"id": "https://ci.example"}},
    }


def build_statement(name: str, inputs: Sequence[str] = (), *, salt: str = "") -> tuple[bytes, str]:
    d = prov.digest(name)
    return prov.statement(name, d, SLSA_V1, build_predicate(inputs, salt=salt)), d


def ok(result: Any) -> int:
    assert isinstance(result, Appended), f"refused: {result!r}"
    return result.receipt["index"]


# ------------------------------------------------------------------------------ a scripted ledger


REVIEW_OFFSET = 40  # ci's grant is reviewed 40 s after the ledger starts: later entries judge it stale


def test_trust_policy_features_agree(store: Any) -> None:
    """Grants (type and subject globs, not-after, review-by), several signers, two keys of one
    principal, a threshold raised then lowered, rotation, revocation with and without
    compromised-since, re-affirmation, missing inputs, an SBOM, re-attestation, a cycle."""
    trust = Trust(store)
    start = store.clock
    review_by = start + REVIEW_OFFSET
    hw = trust.add("acme-hw", Grant((HARDWARE_PART,), ("acme/chips/*",)))
    boards = trust.add("acme-boards", Grant((HARDWARE_PART,), ("acme/*/*",)))
    fw = trust.add("acme-fw", Grant((FIRMWARE_IMAGE,), ("acme/bios/*",), not_after=start + 400))
    fw2 = trust.add("other-fw", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant((SLSA_V1, SLSA_V02), review_by=review_by))
    ci_b = trust.add("ci", Grant(("https://slsa.dev/provenance/*",)), key=generate_private_key())  # a 2nd key of "ci"
    qa = trust.add("qa", Grant(("https://slsa.dev/provenance/*",)))
    bom = trust.add("sbom-bot", Grant((CYCLONEDX,), ("apps/*",)))

    chip_s, chip = prov.hardware_part("acme/chips/c1")
    trust.ok(chip_s, hw)
    board_s, board = prov.hardware_part("acme/boards/b1", children=[chip])
    trust.ok(board_s, boards)
    fw_s, firmware = prov.firmware_image("acme/bios/1", hardware=[board])
    trust.ok(fw_s, fw)
    app1_s, app1 = build_statement("apps/app1", [firmware])
    trust.ok(app1_s, ci)
    missing = prov.digest("nowhere/in/the/ledger")
    app2_s, app2 = build_statement("apps/app2", [firmware, missing])
    trust.ok(app2_s, ci, qa)  # two principals, one input missing
    app3_s, app3 = prov.build("apps/app3", inputs=[app1], v02=True)
    trust.ok(app3_s, ci, ci_b)  # two keys of one principal
    trust.ok(prov.cyclonedx("apps/app1", app1, [chip, prov.digest("unknown component")]), bom)  # an SBOM about app1

    trust.threshold(SLSA_V1, 2)
    assert not isinstance(trust.submit(build_statement("apps/refused", [app1])[0], ci, ci_b), Appended)  # one principal
    app4_s, app4 = build_statement("apps/app4", [app1, app3])
    trust.ok(app4_s, ci, qa)
    trust.threshold(SLSA_V1, 1)  # lowered: app4 was judged under 2, later records under 1
    app5_s, app5 = build_statement("apps/app5", [app4])
    trust.ok(app5_s, ci_b)

    # rotation: the old key's records before it stay trusted, the new key signs on
    ci_new = generate_private_key()
    registry.rotate_key(store.sessions, store.log, trust.admin, ci.key_id, ci_new.public_key, now=store.tick())
    app6_s, app6 = build_statement("apps/app6", [app5])
    trust.ok(app6_s, ci_new)

    # revocation without compromised-since: what fw signed before stays trusted
    trust.revoke(fw)
    # another firmware vendor re-attests the same firmware digest, then is revoked as
    # compromised since before it signed: its record is set aside, the older one holds the link
    trust.ok(prov.statement("acme/bios/1", firmware, FIRMWARE_IMAGE, {
        **json.loads(fw_s)["predicate"], "version": "2.14.1-re"}), fw2)
    fw3_s, fw3 = prov.firmware_image("other/bios/3")
    trust.ok(fw3_s, fw2)
    app7_s, _ = build_statement("apps/app7", [fw3])
    trust.ok(app7_s, qa)
    trust.revoke(fw2, compromised_since=start)

    # a cycle, and re-affirmation of the rotated key's principal (covers the old key's records)
    x, y = prov.digest("apps/x"), prov.digest("apps/y")
    trust.ok(prov.statement("apps/x", x, SLSA_V1, build_predicate([y])), ci_new)
    trust.ok(prov.statement("apps/y", y, SLSA_V1, build_predicate([x])), ci_new)
    late = store.clock
    trust.reaffirm(ci_new, late + 1_000)
    app8_s, _ = build_statement("apps/app8", [app6, app2])
    trust.ok(app8_s, ci_b, qa)

    seen = assert_agree(
        store,
        nows=[start + 1, review_by + 1, late + 500, late + 2_000, start + 10**7],
        ats=around_key_events(store),
    )
    for verdict in ("trusted", "stale", "missing", "untrusted"):
        assert seen.get(verdict), (verdict, seen)



# ------------------------------------------------------------------------------ a seeded random ledger

_TYPES = (HARDWARE_PART, FIRMWARE_IMAGE, SLSA_V1, SLSA_V02, CYCLONEDX)
_GRANT_TYPES = (HARDWARE_PART, FIRMWARE_IMAGE, SLSA_V1, SLSA_V02, CYCLONEDX, "https://slsa.dev/provenance/*", "*")
_GRANT_SUBJECTS: tuple[tuple[str, ...] | None, ...] = (None, None, ("r/*/*",), ("r/app/*",), ("r/hw/*", "r/fw/*"), ("r/bom/*", "r/app/*"))
_THRESHOLD_TYPES = (SLSA_V1, "https://slsa.dev/provenance/*", FIRMWARE_IMAGE, HARDWARE_PART, "*")
_KIND = {HARDWARE_PART: "hw", FIRMWARE_IMAGE: "fw", SLSA_V1: "app", SLSA_V02: "app", CYCLONEDX: "bom"}


class RandomLedger:
    """Drives a store through a seeded random sequence of key events and records. Refusals (a
    record no longer trusted by its signers, an inapplicable key event) are part of the game:
    the ledger refuses them and nothing is appended."""

    def __init__(self, store: Any, seed: int) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.trust = Trust(store)
        self.keys: list[tuple[str, PrivateKey]] = []  # (principal, key): every key registered or rotated in
        self.dead: set[str] = set()  # key ids revoked or rotated out
        self.digests: list[tuple[str, str]] = []  # (name, sha256) of every record's subject
        self.counter = 0
        self.refused = 0
        self.applied: dict[str, int] = {}
        self._grants: dict[str, tuple[Grant, ...]] = {}  # what each key may sign (to pick likely signers)

    # ---- helpers

    def name(self, kind: str) -> str:
        self.counter += 1
        return f"r/{kind}/{self.counter}"

    def live(self) -> list[tuple[str, PrivateKey]]:
        return [(p, k) for p, k in self.keys if k.key_id not in self.dead]

    def grant(self) -> Grant:
        rng = self.rng
        types = tuple(dict.fromkeys(rng.sample(_GRANT_TYPES, rng.randint(1, 2))))
        review_by = self.store.clock + rng.randint(5, 80) if rng.random() < 0.35 else None
        not_after = self.store.clock + rng.randint(20, 200) if rng.random() < 0.2 else None
        return Grant(types, rng.choice(_GRANT_SUBJECTS), not_after=not_after, review_by=review_by)

    def inputs(self, k: int) -> list[str]:
        out = [d for _, d in self.rng.sample(self.digests, min(k, len(self.digests)))]
        if self.rng.random() < 0.12:
            out.append(prov.digest(f"missing/{self.counter}/{self.rng.random()}"))
        return out

    def signers(self, predicate_type: str) -> list[PrivateKey]:
        live = self.live()
        if not live:
            return []
        fits = [k for p, k in live if any(g.covers_type(predicate_type) for g in self._grants.get(k.key_id, ()))]
        pool = fits if fits and self.rng.random() < 0.85 else [k for _, k in live]
        return self.rng.sample(pool, min(len(pool), self.rng.choice((1, 1, 2, 3))))

    def submit(self, stmt: bytes, keys: Sequence[PrivateKey], subjects: Sequence[tuple[str, str]]) -> None:
        if not keys:
            return
        result = self.trust.submit(stmt, *keys)
        if isinstance(result, Appended):
            self.digests.extend(subjects)
            self.applied["record"] = self.applied.get("record", 0) + 1
        else:
            self.refused += 1

    def event(self, what: str, call: Any) -> None:
        try:
            call()
        except LedgerError:
            self.refused += 1
            return
        self.applied[what] = self.applied.get(what, 0) + 1

    # ---- operations

    def add_key(self) -> None:
        principal = f"p{self.rng.randint(0, 5)}"
        grants = tuple(self.grant() for _ in range(self.rng.randint(1, 2)))
        key = generate_private_key()
        self._grants[key.key_id] = grants
        self.event("register", lambda: self.trust.add(principal, *grants, key=key))
        self.keys.append((principal, key))

    def record(self) -> None:
        rng = self.rng
        ptype = rng.choice(_TYPES)
        kind = _KIND[ptype]
        if ptype == CYCLONEDX:
            if not self.digests:
                return
            name, subject = rng.choice(self.digests)
            stmt = prov.cyclonedx(name if name.startswith("r/") else self.name("bom"), subject, self.inputs(rng.randint(1, 3)))
            self.submit(stmt, self.signers(ptype), [])
            return
        name = self.name(kind)
        hws = [d for n, d in self.digests if n.startswith("r/hw/")]
        if ptype == HARDWARE_PART:
            stmt, d = prov.hardware_part(name, children=rng.sample(hws, min(len(hws), rng.randint(0, 2))))
        elif ptype == FIRMWARE_IMAGE:
            stmt, d = prov.firmware_image(name, hardware=rng.sample(hws, min(len(hws), rng.randint(0, 2))))
        elif ptype == SLSA_V1:
            stmt, d = build_statement(name, self.inputs(rng.randint(0, 3)))
        else:
            stmt, d = prov.build(name, inputs=self.inputs(rng.randint(0, 3)), v02=True)
        self.submit(stmt, self.signers(ptype), [(name, d)])

    def reattest(self) -> None:
        """Another record about a digest already in the ledger (same name, other content)."""
        if not self.digests:
            return
        name, d = self.rng.choice(self.digests)
        kind = name.split("/")[1] if name.startswith("r/") else "app"
        ptype = {"hw": HARDWARE_PART, "fw": FIRMWARE_IMAGE}.get(kind, SLSA_V1)
        predicate: Any
        if ptype == SLSA_V1:
            predicate = build_predicate(self.inputs(self.rng.randint(0, 2)), salt=str(self.counter))
        else:
            predicate = json.loads((prov.hardware_part if ptype == HARDWARE_PART else prov.firmware_image)(name)[0])["predicate"]
            predicate["serial" if ptype == HARDWARE_PART else "version"] = f"re-{self.counter}"
        self.counter += 1
        self.submit(prov.statement(name, d, ptype, predicate), self.signers(ptype), [])

    def cycle(self) -> None:
        x_name, y_name = self.name("app"), self.name("app")
        x, y = prov.digest(x_name), prov.digest(y_name)
        keys = self.signers(SLSA_V1)
        self.submit(prov.statement(x_name, x, SLSA_V1, build_predicate([y])), keys, [(x_name, x)])
        self.submit(prov.statement(y_name, y, SLSA_V1, build_predicate([x])), keys, [(y_name, y)])

    def revoke(self) -> None:
        live = self.live()
        if not live:
            return
        _, key = self.rng.choice(live)
        since = self.rng.choice((None, None, self.store.clock - self.rng.randint(0, 30), 0))
        self.event("revoke", lambda: self.trust.revoke(key, compromised_since=since))
        self.dead.add(key.key_id)

    def rotate(self) -> None:
        live = self.live()
        if not live:
            return
        principal, old = self.rng.choice(live)
        new = generate_private_key()
        grants = None if self.rng.random() < 0.6 else (self.grant(),)
        self._grants[new.key_id] = grants or self._grants.get(old.key_id, ())
        self.event("rotate", lambda: registry.rotate_key(
            self.store.sessions, self.store.log, self.trust.admin, old.key_id, new.public_key, now=self.store.tick(), grants=grants))
        self.dead.add(old.key_id)
        self.keys.append((principal, new))

    def reaffirm(self) -> None:
        if not self.keys:
            return
        _, key = self.rng.choice(self.keys)
        review_by = self.store.clock + self.rng.randint(10, 100)
        self.event("reaffirm", lambda: self.trust.reaffirm(key, review_by))
        self._grants[key.key_id] = tuple(Grant(g.predicate_types, g.subjects, g.not_before, g.not_after, review_by)
                                         for g in self._grants.get(key.key_id, ()))

    def threshold(self) -> None:
        pattern = self.rng.choice(_THRESHOLD_TYPES)
        n = self.rng.choice((1, 1, 2, 2, 3))
        self.event("threshold", lambda: self.trust.threshold(pattern, n))

    def run(self, steps: int) -> None:
        ops = [(self.add_key, 3), (self.record, 10), (self.reattest, 1.5), (self.cycle, 0.4), (self.revoke, 1.2),
               (self.rotate, 1.0), (self.reaffirm, 1.0), (self.threshold, 0.8)]
        for _ in range(3):
            self.add_key()
        for _ in range(steps):
            op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
            op()
            if self.rng.random() < 0.15:
                self.store.clock += self.rng.randint(5, 40)  # let review-by dates pass


@pytest.mark.parametrize("seed", [4])
def test_random_operations_agree(store: Any, seed: int) -> None:
    ledger = RandomLedger(store, seed)
    ledger.run(70)
    assert ledger.applied.get("record", 0) >= 15, ledger.applied
    ats = around_key_events(store)
    ats = sorted(set(random.Random(seed).sample(ats, min(len(ats), 8))) | {store.size() - 1})
    end = store.clock
    seen = assert_agree(store, nows=[end, end + 60, end + 10**6], ats=ats)
    assert seen.get("trusted") and seen.get("untrusted"), seen


# ------------------------------------------------------------------------------ deployments and TEE evidence


def set_policy(store: Any, doc: dict[str, Any]) -> int:
    result = registry.set_tee_policy(store.sessions, store.log, Trust(store).admin, json.dumps(doc).encode(), now=store.tick())
    return result.receipt["index"]


def deploy_snp(w: h.World, pki: SnpPki, artifact: str, host: str, *, vmpl: int = 0, name: str = h.ARTIFACT_NAME) -> Any:
    report, endorsements = h.snp_evidence(pki, artifact, host=host, vmpl=vmpl)
    return w.deploy(h.deployment_statement(artifact, "sev-snp", report, endorsements, host=host, name=name))


def deploy_tpm(w: h.World, pki: TpmPki, artifact: str, host: str, *, name: str = h.ARTIFACT_NAME) -> Any:
    return w.deploy(h.deployment_statement(artifact, "tpm", h.tpm_evidence(pki, artifact, host=host), host=host, name=name))


def tee_links(chain: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The TEE-evidence links of a chain, by deployment entry."""
    return {
        int(link["subject"].rsplit("deployment entry ", 1)[1].rstrip(")")): link
        for link in chain["links"] if link["kind"] == "tee-evidence"
    }


def check_now(store: Any, artifacts: Sequence[str]) -> dict[str, Any]:
    """Server == offline for each artifact now; the server's chain of the first."""
    now = store.tick()
    assert_agree(store, nows=[now], artifacts=artifacts)
    with store.sessions() as session:
        return chain_service.chain(session, artifacts[0], now=now)


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_tee_deployments_agree(store: Any, snp_pki: SnpPki, tpm_pki: TpmPki) -> None:
    """SEV-SNP and TPM deployments of two builds of one firmware, under recorded TEE policies
    (widened, then narrowed: re-judged before and after the workers store the rows), a deployment
    after the narrowing, a TPM root re-affirmed (stale past its review-by) then revoked, and the
    firmware signer revoked as compromised from the start."""
    from ledger.services import reappraisal

    w = h.world(store)
    web_s, web = prov.build("payments/web/2.0.0", inputs=[w.firmware])
    w.trust.ok(web_s, w.ci)
    app, web_artifact = f"sha256:{w.artifact}", f"sha256:{web}"
    artifacts = [app, web_artifact]

    set_policy(store, {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [0, 2]}})
    svsm = ok(deploy_snp(w, snp_pki, w.artifact, "vm-b", vmpl=2))
    plain = ok(deploy_snp(w, snp_pki, w.artifact, "vm-c", vmpl=0))
    tpm = ok(deploy_tpm(w, tpm_pki, w.artifact, "vm-t"))
    ok(deploy_snp(w, snp_pki, web, "vm-w", vmpl=0, name="payments/web/2.0.0"))
    # a deployment of an artifact no build record names, and one of the firmware image itself
    # (a deployment about a digest deep in another chain: not a link of that chain)
    orphan = prov.digest("payments/orphan/1.0.0")
    ok(deploy_snp(w, snp_pki, orphan, "vm-o", vmpl=0, name="payments/orphan/1.0.0"))
    anywhere = replace(w, deployer=w.trust.add("deploy-anything", Grant((DEPLOYMENT,))))
    ok(deploy_snp(anywhere, snp_pki, w.firmware, "vm-f", vmpl=0, name="acme/bios/2.14.1"))
    artifacts += [f"sha256:{orphan}", f"sha256:{w.firmware}"]
    chain = check_now(store, artifacts)
    assert {i: l["verdict"] for i, l in tee_links(chain).items()} == {svsm: "trusted", plain: "trusted", tpm: "trusted"}

    # narrowed: the VMPL 0 deployments are re-judged untrusted, before and after the workers ran
    set_policy(store, {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [2]}})
    with store.sessions() as session:
        assert reappraisal.pending(session)
    chain = check_now(store, artifacts)
    assert tee_links(chain)[plain]["verdict"] == "untrusted" and tee_links(chain)[svsm]["verdict"] == "trusted"
    with store.sessions() as session, session.begin():
        reappraisal.reappraise(session)
    check_now(store, artifacts)
    later = ok(deploy_snp(w, snp_pki, w.artifact, "vm-d", vmpl=2))  # after the last key event: its submission appraisal

    # the TPM root the evidence chained to: re-affirmed until soon (stale after), then revoked
    root = tee_links(chain)[tpm]["key_id"]
    registry.reaffirm_key(store.sessions, store.log, w.trust.admin, root, review_by=store.clock + 30, now=store.tick())
    chain = check_now(store, artifacts)
    assert tee_links(chain)[tpm]["verdict"] == "trusted"
    stale_at = store.clock + 60
    assert_agree(store, nows=[stale_at], artifacts=artifacts)
    with store.sessions() as session:
        assert tee_links(chain_service.chain(session, app, now=stale_at))[tpm]["verdict"] == "stale"
    registry.revoke_key(store.sessions, store.log, w.trust.admin, root, now=store.tick(), compromised_since=store.clock - 100)
    chain = check_now(store, artifacts)
    assert tee_links(chain)[tpm]["verdict"] == "untrusted" and tee_links(chain)[later]["verdict"] == "trusted"

    # the firmware vendor's key, compromised from the start: every deployment's match fails
    w.trust.revoke(w.fw, compromised_since=0)
    chain = check_now(store, artifacts)
    assert {l["verdict"] for l in tee_links(chain).values()} == {"untrusted"}

    # and every digest, now and as of every entry around every key event
    end = store.clock
    assert_agree(store, nows=[end, end + 10**6], ats=around_key_events(store))



def reattest_firmware(w: h.World, key: PrivateKey, version: str) -> Any:
    """Another record about the world's firmware digest (same measurements, other content)."""
    stmt = json.loads(h.firmware_statement(board=w.board)[0])
    stmt["predicate"]["version"] = version
    return w.trust.submit(json.dumps(stmt).encode(), key)


@pytest.mark.usefixtures("pinned", "tee_trust")
@pytest.mark.parametrize("seed", [11])
def test_random_tee_operations_agree(store: Any, snp_pki: SnpPki, tpm_pki: TpmPki, seed: int) -> None:
    """A seeded random sequence over the deployment world: builds of the firmware, SEV-SNP (any
    VMPL) and TPM deployments, TEE policies for production and the default environment, firmware
    vendors added, re-attesting the firmware, revoked (with and without compromised-since) and
    re-affirmed (review-by ahead or already past), TPM roots re-affirmed and revoked, the workers'
    re-judging run now and then, and time passing. Every firmware record carries the one
    measurement and is about the one firmware digest (records off the chain are the case
    ONCE DIVERGENT 1 below covers)."""
    from ledger.services import reappraisal
    from ledger.services.trust import load_state

    rng = random.Random(seed)
    w = h.world(store)
    builds = [(w.artifact, h.ARTIFACT_NAME)]
    fw_keys = [w.fw]
    with store.sessions() as session:
        roots = sorted(k for k, v in load_state(session).keys.items() if v.algorithm == "tee-root:tpm")
    counter = iter(range(10**6))
    done: dict[str, int] = {}
    allowed = [0]  # production's latest allowed VMPLs (the built-in policy: 0)
    revoked: set[str] = set()

    def note(what: str, result: Any = True) -> None:
        if result is not None and not isinstance(result, LedgerError):
            done[what] = done.get(what, 0) + 1

    def attempt(what: str, call: Any) -> None:
        try:
            note(what, call())
        except LedgerError:
            pass

    def build() -> None:
        name = f"payments/svc{next(counter)}/1.0"
        inputs = [w.firmware] + ([rng.choice(builds)[0]] if rng.random() < 0.3 else [])
        stmt, d = prov.build(name, inputs=inputs)
        result = w.trust.submit(stmt, w.ci)
        if isinstance(result, Appended):
            builds.append((d, name))
        note("build", result)

    def deploy() -> None:
        artifact, name = rng.choice(builds)
        host = f"vm-{next(counter)}"
        if rng.random() < 0.7:
            vmpl = rng.choice(allowed) if rng.random() < 0.75 else rng.choice((0, 1, 2))
            note("deploy-snp", deploy_snp(w, snp_pki, artifact, host, vmpl=vmpl, name=name))
        else:
            note("deploy-tpm", deploy_tpm(w, tpm_pki, artifact, host, name=name))

    def policy() -> None:
        doc: dict[str, Any] = {"version": 1, "sev-snp": {"allowed_vmpls": sorted(rng.sample([0, 1, 2, 3], rng.randint(1, 3)))}}
        if rng.random() < 0.7:
            doc["environment"] = "production"
            allowed[:] = doc["sev-snp"]["allowed_vmpls"]
        attempt("policy", lambda: set_policy(store, doc))

    def fw_vendor() -> None:
        review_by = store.clock + rng.randint(10, 80) if rng.random() < 0.5 else None
        key = w.trust.add(f"fw-{next(counter)}", Grant((FIRMWARE_IMAGE,), review_by=review_by))
        fw_keys.append(key)
        note("fw-vendor")

    def reattest() -> None:
        live = [k for k in fw_keys if k.key_id not in revoked] or fw_keys
        note("reattest", reattest_firmware(w, rng.choice(live), f"2.14.{next(counter)}"))

    def revoke_fw() -> None:
        key = rng.choice(fw_keys)
        since = rng.choice((None, store.clock - rng.randint(0, 40), 0))
        attempt("revoke-fw", lambda: w.trust.revoke(key, compromised_since=since))
        revoked.add(key.key_id)

    def reaffirm_fw() -> None:
        review_by = store.clock + rng.choice((-40, 30, 90, 200, 400))  # now and then already past
        attempt("reaffirm-fw", lambda: w.trust.reaffirm(rng.choice(fw_keys), review_by))

    def tpm_root() -> None:
        root = rng.choice(roots)
        if rng.random() < 0.6:
            attempt("reaffirm-root", lambda: registry.reaffirm_key(
                store.sessions, store.log, w.trust.admin, root, review_by=store.clock + rng.randint(-30, 90), now=store.tick()))
        else:
            since = rng.choice((None, store.clock - rng.randint(0, 40)))
            attempt("revoke-root", lambda: registry.revoke_key(
                store.sessions, store.log, w.trust.admin, root, now=store.tick(), compromised_since=since))

    def workers() -> None:
        with store.sessions() as session, session.begin():
            reappraisal.reappraise(session)
        note("reappraise")

    ops = [(build, 2), (deploy, 6), (policy, 1.0), (fw_vendor, 0.8), (reattest, 1.5), (revoke_fw, 0.5),
           (reaffirm_fw, 0.8), (tpm_root, 0.5), (workers, 0.8)]
    for _ in range(45):
        rng.choices([o for o, _ in ops], weights=[wt for _, wt in ops])[0]()
        if rng.random() < 0.15:
            store.clock += rng.randint(5, 40)
    assert done.get("deploy-snp", 0) + done.get("deploy-tpm", 0) >= 5, done
    ats = around_key_events(store)
    ats = sorted(set(rng.sample(ats, min(len(ats), 7))) | {store.size() - 1})
    end = store.clock
    seen = assert_agree(store, nows=[end, end + 10**6], ats=ats)
    assert seen.get("trusted") and seen.get("untrusted"), seen
