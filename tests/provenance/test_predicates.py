"""Predicates we own are schema-checked (a 400 naming the field); SBOMs are read leniently."""

from __future__ import annotations

import json

import pytest

from ledger.errors import MalformedError
from ledger.trust.graph import edges_of, normalise_algorithm
from ledger.trust.predicates import (
    CYCLONEDX,
    FIRMWARE_IMAGE,
    HARDWARE_PART,
    KEY_EVENT,
    SLSA_V02,
    SLSA_V1,
    SPDX,
    kind_of,
    validate_predicate,
)
from tests.conftest import load_vector
from tests.provenance import helpers


def _predicate(stmt: bytes) -> dict:
    return json.loads(stmt)["predicate"]


def test_valid_owned_predicates_pass() -> None:
    validate_predicate(HARDWARE_PART, _predicate(helpers.hardware_part("acme/board")[0]))
    validate_predicate(FIRMWARE_IMAGE, _predicate(helpers.firmware_image("acme/bios")[0]))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("manufacturer"), "predicate.manufacturer is required"),
        (lambda p: p.pop("serial"), "serial or lot"),
        (lambda p: p["manufactured"].update(date="14/03/2026"), "predicate.manufactured.date"),
        (lambda p: p["children"].append({"digest": {"sha256": "zz"}}), "predicate.children[0].digest.sha256"),
        (lambda p: p.update(colour="red"), "'colour' was unexpected"),
    ],
)
def test_hardware_part_schema_names_the_field(mutate, field) -> None:  # type: ignore[no-untyped-def]
    predicate = _predicate(helpers.hardware_part("acme/board")[0])
    mutate(predicate)
    with pytest.raises(MalformedError, match=field.replace("[", r"\[").replace("]", r"\]")):
        validate_predicate(HARDWARE_PART, predicate)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("measurements", "sev-snp"), "ab" * 47, "predicate.measurements.sev-snp"),
        (("measurements", "tdx", "mrtd"), "xy" * 48, "predicate.measurements.tdx.mrtd"),
        (("measurements", "tdx", "rtmr4"), "00" * 48, "rtmr4"),
        (("measurements", "tpm", "pcrs", "24"), "11" * 32, "predicate.measurements.tpm.pcrs"),
        (("measurements", "tpm", "pcrs", "0"), "11" * 20, "predicate.measurements.tpm.pcrs.0"),
        (("measurements", "nitro", "pcr1"), "44" * 32, "predicate.measurements.nitro.pcr1"),
        (("security_version",), -1, "predicate.security_version"),
        (("targets",), [], "predicate.targets"),
    ],
)
def test_firmware_measurements_are_checked(path, value, field) -> None:  # type: ignore[no-untyped-def]
    predicate = _predicate(helpers.firmware_image("acme/bios")[0])
    target = predicate
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    with pytest.raises(MalformedError, match=field):
        validate_predicate(FIRMWARE_IMAGE, predicate)


def test_tpm_digest_length_follows_the_bank() -> None:
    predicate = _predicate(helpers.firmware_image("acme/bios")[0])
    predicate["measurements"]["tpm"] = {"bank": "sha1", "pcrs": {"0": "11" * 20}}
    validate_predicate(FIRMWARE_IMAGE, predicate)
    predicate["measurements"]["tpm"]["pcrs"]["0"] = "11" * 32
    with pytest.raises(MalformedError, match="tpm.pcrs.0"):
        validate_predicate(FIRMWARE_IMAGE, predicate)


def test_key_event_schema() -> None:
    with pytest.raises(MalformedError, match="predicate.review_by is required"):
        validate_predicate(KEY_EVENT, {"action": "reaffirm"})
    with pytest.raises(MalformedError, match="predicate.key_id"):  # optional (older events), but a key id
        validate_predicate(KEY_EVENT, {"action": "revoke", "key_id": "0" * 63})
    with pytest.raises(MalformedError, match="predicate.action"):
        validate_predicate(KEY_EVENT, {"action": "delete", "key_id": "0" * 64})


def test_predicate_must_be_an_object() -> None:
    with pytest.raises(MalformedError):
        validate_predicate(HARDWARE_PART, ["not", "an", "object"])
    with pytest.raises(MalformedError, match="resolvedDependencies"):
        validate_predicate(SLSA_V1, {"buildDefinition": {"resolvedDependencies": "x"}})


def test_kinds() -> None:
    assert kind_of(SLSA_V1) == kind_of(SLSA_V02) == "build"
    assert kind_of(CYCLONEDX) == kind_of(CYCLONEDX + "/v1.4") == "sbom"
    assert kind_of(SPDX) == kind_of(SPDX + "/v2.3") == kind_of(SPDX + "/v3") == "sbom"
    assert kind_of("https://example.com/x") == "other"


def test_edges_of_each_kind() -> None:
    a, b = helpers.digest("a"), helpers.digest("b")
    assert edges_of(SLSA_V1, _predicate(helpers.build("x", inputs=[a, b])[0])) == (("input", "sha256", a), ("input", "sha256", b))
    assert edges_of(SLSA_V02, _predicate(helpers.build("x", inputs=[a], v02=True)[0])) == (("input", "sha256", a),)
    assert edges_of(HARDWARE_PART, _predicate(helpers.hardware_part("x", children=[a])[0])) == (("child", "sha256", a),)
    fw = edges_of(FIRMWARE_IMAGE, _predicate(helpers.firmware_image("x", hardware=[a])[0]))
    assert fw == (("hardware", "sha256", a), ("target", "model", "RC-2000"))
    assert edges_of(CYCLONEDX, _predicate(helpers.cyclonedx("x", b, [a]))) == (("component", "sha256", a),)
    assert edges_of(SPDX + "/v2.3", _predicate(helpers.spdx("x", b, [a, a.upper()]))) == (("component", "sha256", a),)
    # a record's edge to its own subject is dropped
    assert edges_of(CYCLONEDX, _predicate(helpers.cyclonedx("x", a, [a])), [("sha256", a)]) == ()


def test_nested_cyclonedx_and_spdx3() -> None:
    a, b = helpers.digest("a"), helpers.digest("b")
    bom = {"components": [{"hashes": [{"alg": "SHA-512", "content": "ab" * 64}], "components": [
        {"hashes": [{"alg": "SHA-256", "content": a}, {"alg": "MD5", "content": "00" * 16}]}]}]}
    assert edges_of(CYCLONEDX, bom) == (("component", "sha512", "ab" * 64), ("component", "sha256", a))
    doc = {"@graph": [{"type": "software_Package", "verifiedUsing": [{"algorithm": "sha256", "hashValue": b}]},
                      {"type": "Person", "verifiedUsing": [{"algorithm": "sha256", "hashValue": a}]}]}
    assert edges_of(SPDX + "/v3", doc) == (("component", "sha256", b),)
    assert normalise_algorithm("SHA3-512") == "sha3-512"
    assert normalise_algorithm("MD5") is None


@pytest.mark.vectors
@pytest.mark.parametrize(("vector", "ptype"), [("guac.small-deps-cyclonedx.json", CYCLONEDX), ("guac.alpine-small-spdx.json", SPDX)])
def test_real_world_sboms_are_accepted(vector: str, ptype: str) -> None:
    bom = load_vector(f"provenance/sbom/{vector}")
    validate_predicate(ptype, bom)
    edges = edges_of(ptype, bom)
    assert all(kind == "component" for kind, _, _ in edges)
    if ptype == CYCLONEDX:  # SHA3-512 hashes become edges; MD5 ones do not
        assert edges and all(alg == "sha3-512" for _, alg, _ in edges)


def test_garbage_sbom_parts_are_skipped_not_refused() -> None:
    bom = {"components": ["x", {"hashes": "nope"}, {"hashes": [{"alg": 5}, {"alg": "SHA-256", "content": "short"}]}]}
    validate_predicate(CYCLONEDX, bom)
    assert edges_of(CYCLONEDX, bom) == ()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(manufacturer="m" * 1_000_000),  # a string over its length
        lambda p: p["manufactured"].update(date="2" * 1_000_000),  # a string off its pattern
        lambda p: p.update(manufacturer=["x" * 1000] * 1000),  # a huge value of the wrong type
        lambda p: p.update({"k" * 100_000: 1}),  # an unexpected key of 100,000 characters
    ],
)
def test_a_schema_error_shows_a_huge_value_by_its_start_and_length(mutate) -> None:  # type: ignore[no-untyped-def]
    """jsonschema words its errors around the value itself: a megabyte field came back whole in
    the 400 answer, on stderr and in logs. The message shows its start and its length."""
    predicate = _predicate(helpers.hardware_part("acme/board")[0])
    mutate(predicate)
    with pytest.raises(MalformedError) as refused:
        validate_predicate(HARDWARE_PART, predicate)
    message = str(refused.value)
    assert "predicate" in message and len(message) < 2_000, len(message)


def test_a_short_value_is_shown_whole() -> None:
    predicate = _predicate(helpers.hardware_part("acme/board")[0])
    predicate["manufactured"]["date"] = "14/03/2026"
    with pytest.raises(MalformedError, match="'14/03/2026' does not match"):
        validate_predicate(HARDWARE_PART, predicate)
