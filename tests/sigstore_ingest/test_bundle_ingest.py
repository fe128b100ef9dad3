"""Sigstore bundles into the ledger: every vector of expected.json through the API with its stated
result, a GitHub workflow identity policy, duplicates, malformed and oversized bundles, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import MalformedError, NotTrustedError, TooLargeError, VerificationError
from ledger.trust.policy import Grant
from ledger.trust.predicates import CYCLONEDX, SLSA_V1
from ledger.records.leaf import LEAF_KIND_BUNDLE, decode_leaf
from ledger.services.audit import audit
from ledger.services.bundles import ARTIFACT_SIGNATURE
from ledger.services.registry import create_token
from tests.sigstore_ingest.conftest import BEACON_REPO, BEACON_SAN, GITHUB, HAPPY_DSSE, Policy, all_cases, ok, register_for

BEACON_SHA256 = "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"


def _client(st: Any) -> tuple[Any, dict[str, str]]:
    from web.app import create_app  # noqa: PLC0415

    with st.sessions() as session, session.begin():
        token = create_token(session, "ci", "submit", now=1)
    app = create_app({"SETTINGS": st.settings, "TESTING": True})
    return app.test_client(), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _entry(st: Any, index: int) -> dict[str, Any]:
    from ledger.db import store as dbstore  # noqa: PLC0415

    with st.sessions() as session:
        row = dbstore.get_entry(session, index)
        return {"data": bytes(row.data), "predicate_type": row.predicate_type, "key_id": row.key_id}


# ------------------------------------------------------------------------------ every vector


def test_every_vector_gives_its_stated_result_through_the_api(bundle_store: Any, provenance: Path) -> None:
    policy = Policy(bundle_store)
    cases = all_cases()
    assert len([c for c in cases if c.expect == "fail"]) == 2
    for case in cases:
        if case.expect == "pass":
            register_for(policy, case, provenance)
    client, headers = _client(bundle_store)
    indexes: dict[str, int] = {}
    for case in cases:
        body = (provenance / case.bundle).read_bytes()
        r = client.post("/api/v1/entries", data=body, headers=headers)
        if case.expect == "fail":
            # well-formed bundles whose checks fail: 422, and nothing is appended
            assert r.status_code == 422, (case.id, r.json)
            assert r.json["error"]["code"] == "verification_failed"
            continue
        assert r.status_code == 201, (case.id, r.json)
        indexes[case.id] = r.json["index"]
        leaf = decode_leaf(_entry(bundle_store, r.json["index"])["data"])
        assert leaf.kind == LEAF_KIND_BUNDLE
        # the original bundle, as submitted (its JSON value), is in the entry
        assert leaf.bundle == json.loads(body)
        sample = case.sample or {}
        if sample.get("content") == "dsseEnvelope" and "subject" in sample:
            entry = _entry(bundle_store, r.json["index"])
            assert entry["predicate_type"] == SLSA_V1
            found = client.get(f"/api/v1/entries?subject=sha256:{sample['subject']['sha256']}")
            assert r.json["index"] in [e["index"] for e in found.json["entries"]]
    assert len(indexes) == len(cases) - 2
    # duplicates: the same bundle again gives the first entry's receipt (200, same index)
    for case in cases:
        if case.expect == "pass":
            r = client.post("/api/v1/entries", data=(provenance / case.bundle).read_bytes(), headers=headers)
            assert r.status_code == 200 and r.json["index"] == indexes[case.id], case.id
    # re-serialised (another JSON layout of the same bundle) is still the same bundle
    doc = json.loads((provenance / HAPPY_DSSE).read_bytes())
    r = client.post("/api/v1/entries", data=json.dumps(doc, indent=4), headers=headers)
    assert r.status_code == 200 and r.json["index"] == indexes["happy-path-intoto-in-dsse-v3"]
    with bundle_store.sessions() as session:
        report = audit(session, bundle_store.log)
    assert report.ok, report.to_json()


def test_message_signature_bundles_are_indexed_by_the_artifact_digest(bundle_store: Any, provenance: Path) -> None:
    policy = Policy(bundle_store)
    case = next(c for c in all_cases() if c.id == "managed-key-happy-path")
    key_id = policy.key("release-key", (provenance / case.public_key).read_bytes())  # type: ignore[operator]
    (result,) = bundle_store.append([(provenance / case.bundle).read_bytes()], now=bundle_store.tick())
    receipt = ok(result)
    entry = _entry(bundle_store, receipt["index"])
    assert entry["predicate_type"] == ARTIFACT_SIGNATURE and entry["key_id"] == key_id
    import hashlib  # noqa: PLC0415

    artifact = hashlib.sha256((provenance / "sigstore-bundles/conformance/a.txt").read_bytes()).hexdigest()
    from ledger.services import chain  # noqa: PLC0415

    with bundle_store.sessions() as session:
        found, _ = chain.search(session, digest=f"sha256:{artifact}")
    assert receipt["index"] in [e["index"] for e in found]


def test_a_public_key_bundle_needs_its_key_registered_and_granted(bundle_store: Any, provenance: Path) -> None:
    case = next(c for c in all_cases() if c.id == "managed-key-happy-path")
    body = (provenance / case.bundle).read_bytes()
    (result,) = bundle_store.append([body], now=bundle_store.tick())
    assert isinstance(result, NotTrustedError) and "managed key that is not registered" in str(result)
    Policy(bundle_store).key("k", (provenance / case.public_key).read_bytes(), Grant((SLSA_V1,)))  # type: ignore[operator]
    (result,) = bundle_store.append([body], now=bundle_store.tick())
    assert isinstance(result, NotTrustedError) and ARTIFACT_SIGNATURE in str(result)


# ------------------------------------------------------------------------------ GitHub workflow identities


def _submit(st: Any, relative: str, provenance: Path) -> Any:
    (result,) = st.append([(provenance / relative).read_bytes()], now=st.tick())
    return result


def test_workflow_identity_pinned_to_its_repository_is_accepted(any_bundle_store: Any, provenance: Path) -> None:
    policy = Policy(any_bundle_store)
    identity_id = policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO, Grant((SLSA_V1,), subjects=("a.txt",)))
    receipt = ok(_submit(any_bundle_store, HAPPY_DSSE, provenance))
    # the entry's signer is the identity principal; the leaf records the certificate identity
    entry = _entry(any_bundle_store, receipt["index"])
    assert entry["key_id"] == identity_id
    leaf = decode_leaf(entry["data"])
    assert leaf.signer["identity"]["san"] == BEACON_SAN  # type: ignore[index]
    assert leaf.signer["identity"]["extensions"]["source_repository_uri"] == BEACON_REPO  # type: ignore[index]
    # the chain of trust sees the identity as the signer
    from ledger.services import chain  # noqa: PLC0415

    with any_bundle_store.sessions() as session:
        doc = chain.chain(session, f"sha256:{BEACON_SHA256}")
    link = next(link for link in doc["links"] if link["index"] == receipt["index"])
    assert link["verdict"] == "trusted" and link["signer"] == "beacon"


def test_the_right_workflow_from_another_repository_is_refused(any_bundle_store: Any, provenance: Path) -> None:
    # A reusable workflow's SAN is the same for every caller: pinning the repository refuses the others.
    Policy(any_bundle_store).identity("other", BEACON_SAN, GITHUB, "https://github.com/acme/widget")
    result = _submit(any_bundle_store, HAPPY_DSSE, provenance)
    assert isinstance(result, NotTrustedError)
    message = str(result)
    assert f"no identity grant for SAN {BEACON_SAN!r} from issuer {GITHUB!r} for source repository {BEACON_REPO!r}" in message
    assert "https://github.com/acme/widget" in message  # the near miss is named
    assert any_bundle_store.size() == 1  # only the identity's key event


def test_a_san_only_grant_trusts_every_caller_until_the_repository_is_pinned(any_bundle_store: Any, provenance: Path) -> None:
    policy = Policy(any_bundle_store)
    san_only = policy.identity("any-caller", BEACON_SAN, GITHUB, None)
    ok(_submit(any_bundle_store, HAPPY_DSSE, provenance))
    # the operator pins both instead: revoke the SAN-only grant, register SAN + another repository
    policy.revoke(san_only)
    policy.identity("widget-only", BEACON_SAN, GITHUB, "https://github.com/acme/widget")
    other = "sigstore-bundles/conformance/happy-path-v0.3/bundle.sigstore.json"  # same workflow, same repository
    result = _submit(any_bundle_store, other, provenance)
    assert isinstance(result, NotTrustedError), result


def test_wrong_issuer_and_san_globs(bundle_store: Any, provenance: Path) -> None:
    policy = Policy(bundle_store)
    policy.identity("gitlab", BEACON_SAN, "https://gitlab.com", BEACON_REPO)
    result = _submit(bundle_store, HAPPY_DSSE, provenance)
    assert isinstance(result, NotTrustedError) and "from issuer 'https://token.actions.githubusercontent.com'" in str(result)
    # "*" stays inside one "/" segment: an org-wide prefix glob does not match a workflow path
    policy.identity("org", "https://github.com/sigstore-conformance/*", GITHUB, BEACON_REPO)
    assert isinstance(_submit(bundle_store, HAPPY_DSSE, provenance), NotTrustedError)
    policy.identity(
        "org-workflows",
        "https://github.com/sigstore-conformance/*/.github/workflows/*.yml@refs/heads/main",
        GITHUB,
        BEACON_REPO,
    )
    ok(_submit(bundle_store, HAPPY_DSSE, provenance))


def test_identity_grants_scope_predicate_type_subject_and_revocation(bundle_store: Any, provenance: Path) -> None:
    policy = Policy(bundle_store)
    sboms = policy.identity("sboms", BEACON_SAN, GITHUB, BEACON_REPO, Grant((CYCLONEDX,)))
    result = _submit(bundle_store, HAPPY_DSSE, provenance)
    assert isinstance(result, NotTrustedError) and "no grant for predicate type 'https://slsa.dev/provenance/v1'" in str(result)
    assert f"identity {sboms} (sboms)" in str(result)
    policy.revoke(sboms)
    narrow = policy.identity("narrow", BEACON_SAN + "*", GITHUB, BEACON_REPO, Grant((SLSA_V1,), subjects=("b.txt",)))
    result = _submit(bundle_store, HAPPY_DSSE, provenance)
    assert isinstance(result, NotTrustedError) and "no grant for subject 'a.txt'" in str(result)
    policy.revoke(narrow)
    expired = policy.identity("old", BEACON_SAN, GITHUB + "/", None)  # another identity id, right SAN
    policy.revoke(expired)
    result = _submit(bundle_store, HAPPY_DSSE, provenance)
    assert isinstance(result, NotTrustedError)
    # a grant window closed before the ledger's integration time: not trusted now, even though
    # the bundle was signed (years ago) inside it: grants are judged at integration time
    # (a revoked identity stays revoked, like a key: a new grant needs another identity id)
    any_workflow = BEACON_REPO + "/.github/workflows/*.yml@refs/heads/main"
    policy.identity("window", any_workflow, GITHUB, BEACON_REPO, Grant((SLSA_V1,), not_after=bundle_store.clock - 1))
    result = _submit(bundle_store, HAPPY_DSSE, provenance)
    assert isinstance(result, NotTrustedError) and "not valid at" in str(result)


def _every_audit(st: Any) -> list[tuple[Any, str]]:
    """(report, its problems' messages) of the full audit and of the signature-level one (the
    shards, then the combiner)."""
    from ledger.services import audit, shards  # noqa: PLC0415

    with st.sessions() as session:
        report = audit.audit(session, st.log)
        log = st.log
        results = [shards.verify_shard(session, s, vkey=log.vkey, origin=log.origin) for s in shards.plan_shards(report.tree_size, 1)]
        combined = shards.combine_shards(session, report.tree_size, results, vkey=log.vkey, origin=log.origin)
    return [(found, " ".join(p["message"] if isinstance(p, dict) else p.message for p in found.problems)) for found in (report, combined)]


def test_a_keyless_entry_whose_signer_rows_name_no_registered_identity_fails_every_audit(any_bundle_store: Any, provenance: Path) -> None:
    """entry_signers of a keyless entry is a cache of the identity its certificate matched: rows
    naming something that is not an identity registered before the entry fail the audit, the
    hash-plus-cache one and the signature-level one (shards, then the combiner)."""
    from sqlalchemy import text  # noqa: PLC0415

    from ledger.services import audit  # noqa: PLC0415

    st = any_bundle_store
    policy = Policy(st)
    policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO, Grant((SLSA_V1,), subjects=("a.txt",)))
    index = ok(_submit(st, HAPPY_DSSE, provenance))["index"]
    with st.sessions() as session:
        assert audit.audit(session, st.log).ok
    with st.tamper() as conn:
        conn.execute(text("UPDATE entry_signers SET key_id = :z WHERE entry_idx = :i"), {"z": "0" * 64, "i": index})
        conn.execute(text("UPDATE entries SET key_id = :z WHERE idx = :i"), {"z": "0" * 64, "i": index})
    for found, messages in _every_audit(st):
        assert not found.ok and found.first_bad_index == index
        assert "not an identity registered before" in messages


def test_a_keyless_entry_whose_signer_rows_name_an_identity_its_certificate_does_not_match_fails_every_audit(
    any_bundle_store: Any, provenance: Path
) -> None:
    """Moving a keyless entry's signer rows to another registered identity (one the certificate's
    SAN, issuer or source repository does not match, say a wider-granted one) is named by the
    audit: the rows are matched against the certificate identity the leaf records."""
    from sqlalchemy import text  # noqa: PLC0415

    from ledger.services import audit  # noqa: PLC0415

    st = any_bundle_store
    policy = Policy(st)
    others = [
        policy.identity("widget", BEACON_SAN, GITHUB, "https://github.com/acme/widget"),  # another caller
        policy.identity("gitlab", BEACON_SAN, "https://gitlab.com", None),  # another issuer
        policy.identity("elsewhere", "https://github.com/acme/*/.github/workflows/*.yml@refs/heads/main", GITHUB, None),
    ]
    policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO, Grant((SLSA_V1,), subjects=("a.txt",)))
    index = ok(_submit(st, HAPPY_DSSE, provenance))["index"]
    with st.sessions() as session:
        assert audit.audit(session, st.log).ok
    reasons = ("source repository", "OIDC issuer", "does not match")
    for other, reason in zip(others, reasons, strict=True):
        with st.tamper() as conn:
            conn.execute(text("UPDATE entry_signers SET key_id = :z WHERE entry_idx = :i"), {"z": other, "i": index})
            conn.execute(text("UPDATE entries SET key_id = :z WHERE idx = :i"), {"z": other, "i": index})
        for found, messages in _every_audit(st):
            assert not found.ok and found.first_bad_index == index
            assert f"entry_signers names identity {other}, which its certificate does not match" in messages
            assert reason in messages


def test_a_keyless_entry_whose_signer_rows_add_or_drop_a_matching_identity_fails_every_audit(
    any_bundle_store: Any, provenance: Path
) -> None:
    """entry_signers of a keyless entry is rebuilt, not only checked row by row: an identity the
    certificate matches but whose grants did not count (no grant for the predicate type) added
    to the rows, or the counted one swapped for it, is named."""
    from sqlalchemy import text  # noqa: PLC0415

    from ledger.services import audit  # noqa: PLC0415

    st = any_bundle_store
    policy = Policy(st)
    sboms = policy.identity("sboms-only", BEACON_SAN, GITHUB, BEACON_REPO, Grant((CYCLONEDX,)))
    beacon = policy.identity("beacon", BEACON_SAN + "*", GITHUB, BEACON_REPO, Grant((SLSA_V1,), subjects=("a.txt",)))
    index = ok(_submit(st, HAPPY_DSSE, provenance))["index"]
    with st.sessions() as session:
        assert audit.audit(session, st.log).ok
    with st.tamper() as conn:
        conn.execute(text("INSERT INTO entry_signers (entry_idx, key_id) VALUES (:i, :k)"), {"i": index, "k": sboms})
    for step in ("added", "swapped"):
        if step == "swapped":
            with st.tamper() as conn:
                conn.execute(text("DELETE FROM entry_signers WHERE entry_idx = :i AND key_id = :k"), {"i": index, "k": beacon})
                conn.execute(text("UPDATE entries SET key_id = :k WHERE idx = :i"), {"k": sboms, "i": index})
        for found, messages in _every_audit(st):
            assert not found.ok and found.first_bad_index == index, step
            assert f"are not the identities its certificate matched whose grants counted ['{beacon}']" in messages, step


def test_identities_are_in_the_key_history_and_audited(bundle_store: Any, provenance: Path) -> None:
    from sqlalchemy import text  # noqa: PLC0415

    from ledger.services.policy import state_at, verify_trust_state  # noqa: PLC0415
    from ledger.services.trust import load_state  # noqa: PLC0415

    policy = Policy(bundle_store)
    identity_id = policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    with bundle_store.sessions() as session:
        assert load_state(session).keys == state_at(session).keys
        state = load_state(session).keys[identity_id]
        assert state.identity is not None and state.identity.source_repository == BEACON_REPO
        assert verify_trust_state(session, bundle_store.log) == []
    # an attacker widens the materialised identity (drops the repository pin): audit names it
    widened = json.dumps({"issuer": GITHUB, "san": BEACON_SAN}, separators=(",", ":"), sort_keys=True).encode()
    with bundle_store.tamper() as conn:
        conn.execute(text("UPDATE trust_keys SET public_key = :v WHERE key_id = :k"), {"v": widened, "k": identity_id})
    with bundle_store.sessions() as session:
        problems = verify_trust_state(session, bundle_store.log)
    assert [p.kind for p in problems] == ["trust_state"] and "public_key" in problems[0].message


# ------------------------------------------------------------------------------ bad input


def _happy(provenance: Path) -> dict[str, Any]:
    return json.loads((provenance / HAPPY_DSSE).read_bytes())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: {**d, "mediaType": "application/vnd.dev.sigstore.bundle+json;version=9"}, "not a known Sigstore bundle type"),
        (lambda d: {k: v for k, v in d.items() if k != "verificationMaterial"}, "missing verificationMaterial"),
        (lambda d: {**d, "extra": 1}, "unknown fields: extra"),
        (lambda d: {**d, "dsseEnvelope": {**d["dsseEnvelope"], "payload": "%%%"}}, "base64"),
        (lambda d: {**d, "messageSignature": {"signature": "AAAA"}}, "exactly one of messageSignature or dsseEnvelope"),
        (lambda d: {**d, "mediaType": 7}, "mediaType"),
    ],
)
def test_malformed_bundles_are_400(bundle_store: Any, provenance: Path, mutate: Any, fragment: str) -> None:
    Policy(bundle_store).identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    client, headers = _client(bundle_store)
    size = bundle_store.size()
    r = client.post("/api/v1/entries", data=json.dumps(mutate(_happy(provenance))), headers=headers)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "malformed" and fragment in r.json["error"]["message"]
    assert bundle_store.size() == size


def test_truncated_oversized_and_unsupported_content(bundle_store: Any, provenance: Path) -> None:
    Policy(bundle_store).identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    body = (provenance / HAPPY_DSSE).read_bytes()
    for cut in (len(body) // 2, len(body) - 2):
        (result,) = bundle_store.append([body[:cut]], now=bundle_store.tick())
        assert isinstance(result, MalformedError), cut
    (result,) = bundle_store.append([body], now=bundle_store.tick(), limit=len(body) - 1)
    assert isinstance(result, TooLargeError) and f"limit of {len(body) - 1} bytes" in str(result)
    # a batch item (decoded object) is measured the same way
    (result,) = bundle_store.append([json.loads(body)], now=bundle_store.tick(), limit=1000)
    assert isinstance(result, TooLargeError)
    # a message signature that does not state its digest cannot be indexed
    doc = json.loads((provenance / "sigstore-bundles/conformance/happy-path-v0.3/bundle.sigstore.json").read_bytes())
    del doc["messageSignature"]["messageDigest"]
    (result,) = bundle_store.append([json.dumps(doc).encode()], now=bundle_store.tick())
    assert isinstance(result, MalformedError) and "SHA2_256" in str(result)
    # the web layer's 413 for a body over the envelope limit holds for bundles too
    client, headers = _client(bundle_store)
    client.application.config["MAX_ENVELOPE_BYTES"] = 1000
    r = client.post("/api/v1/entries", data=body, headers=headers)
    assert r.status_code == 413 and r.json["error"]["code"] == "too_large"
    assert bundle_store.size() == 1


def test_a_bundle_whose_signature_was_altered_is_422(bundle_store: Any, provenance: Path) -> None:
    Policy(bundle_store).identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    doc = _happy(provenance)
    import base64  # noqa: PLC0415

    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (result,) = bundle_store.append([json.dumps(doc).encode()], now=bundle_store.tick())
    assert isinstance(result, VerificationError) and not isinstance(result, NotTrustedError)
    # and the verified time may not be after the ledger's clock
    (result,) = bundle_store.append([(provenance / HAPPY_DSSE).read_bytes()], now=1_600_000_000)
    assert isinstance(result, VerificationError) and "after now" in str(result)



def test_bundle_entries_are_served_by_the_api_and_the_ui(bundle_store: Any, provenance: Path) -> None:
    """A message-signature bundle has no envelope: its entry is still served (bundle + signer),
    as JSON and as the auditor's page, instead of failing."""
    policy = Policy(bundle_store)
    case = next(c for c in all_cases() if c.id == "managed-key-happy-path")
    key_id = policy.key("release-key", (provenance / case.public_key).read_bytes())  # type: ignore[operator]
    (result,) = bundle_store.append([(provenance / case.bundle).read_bytes()], now=bundle_store.tick())
    index = ok(result)["index"]
    client, _ = _client(bundle_store)
    got = client.get(f"/api/v1/entries/{index}")
    assert got.status_code == 200
    doc = got.get_json()
    assert doc["envelope"] is None and doc["statement"] is None
    assert doc["bundle"]["messageSignature"] and doc["signer"]["key_id"] == key_id
    page = client.get(f"/entries/{index}")
    assert page.status_code == 200
    assert b"messageSignature" in page.data and b"message signature" in page.data
