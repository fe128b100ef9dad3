"""The record kinds the ledger understands, and the validation of the predicates it owns.

Predicates we own (hardware part, firmware image, key event, deployment) are validated against their JSON
Schemas (``schemas/*.json``, Draft 2020-12) at submission; a failure is a MalformedError that
names the field. Predicates others own (SLSA provenance, CycloneDX, SPDX) are only checked as far
as the ledger reads them: real-world SBOMs that a strict parser would refuse are accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from ledger.errors import MalformedError
from ledger.untrusted.schema import schema_message

__all__ = [
    "CYCLONEDX",
    "DEPLOYMENT",
    "FIRMWARE_IMAGE",
    "HARDWARE_PART",
    "KEY_EVENT",
    "OWNED_PREDICATES",
    "SLSA_V02",
    "SLSA_V1",
    "SPDX",
    "kind_of",
    "schema_of",
    "validate_predicate",
]

HARDWARE_PART = "https://provenance-ledger.dev/hardware-part/v1"
FIRMWARE_IMAGE = "https://provenance-ledger.dev/firmware-image/v1"
KEY_EVENT = "https://provenance-ledger.dev/key-event/v1"
#: an artifact bound to TEE evidence of its host (``ledger.trust.deployment``)
DEPLOYMENT = "https://provenance-ledger.dev/deployment/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
CYCLONEDX = "https://cyclonedx.org/bom"
SPDX = "https://spdx.dev/Document"

#: predicate type → schema file under ledger/trust/schemas
OWNED_PREDICATES = {
    HARDWARE_PART: "hardware-part.v1.json",
    FIRMWARE_IMAGE: "firmware-image.v1.json",
    KEY_EVENT: "key-event.v1.json",
    DEPLOYMENT: "deployment.v1.json",
}

#: how many schema errors a message lists before "…"
MAX_REPORTED_ERRORS = 3


def kind_of(predicate_type: str) -> str:
    """The record kind of a predicate type: hardware-part, firmware-image, key-event, build,
    sbom, deployment or other."""
    if predicate_type == HARDWARE_PART:
        return "hardware-part"
    if predicate_type == FIRMWARE_IMAGE:
        return "firmware-image"
    if predicate_type == KEY_EVENT:
        return "key-event"
    if predicate_type == DEPLOYMENT:
        return "deployment"
    if predicate_type in (SLSA_V1, SLSA_V02):
        return "build"
    if _is_cyclonedx(predicate_type) or _is_spdx(predicate_type):
        return "sbom"
    return "other"


def _is_cyclonedx(predicate_type: str) -> bool:
    return predicate_type == CYCLONEDX or predicate_type.startswith(CYCLONEDX + "/v1.")


def _is_spdx(predicate_type: str) -> bool:
    return predicate_type == SPDX or predicate_type.startswith(SPDX + "/v")


def is_cyclonedx(predicate_type: str) -> bool:
    return _is_cyclonedx(predicate_type)


def is_spdx(predicate_type: str) -> bool:
    return _is_spdx(predicate_type)


@cache
def schema_of(predicate_type: str) -> dict[str, Any]:
    """The JSON Schema of a predicate type the ledger owns (KeyError for others)."""
    name = OWNED_PREDICATES[predicate_type]
    text = resources.files("ledger.trust").joinpath("schemas", name).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator(predicate_type: str) -> Any:
    import jsonschema  # noqa: PLC0415 - only submissions of our own predicates need it

    schema = schema_of(predicate_type)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _path(error: Any) -> str:
    parts = ["predicate"]
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(parts)


def _describe(error: Any) -> str:
    # Name the missing or offending field itself, not only its parent.
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{_path(error)}.{missing} is required"
    if error.validator == "additionalProperties":
        return f"{_path(error)}: {schema_message(error)}"
    if error.validator in ("anyOf", "oneOf") and error.schema_path and "anyOf" in error.schema_path:
        options = " or ".join("/".join(s.get("required", [])) for s in error.validator_value if isinstance(s, dict))
        return f"{_path(error)} needs {options}"
    return f"{_path(error)}: {schema_message(error)}"


def _ordered(errors: Iterable[Any]) -> list[Any]:
    return sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))


def validate_predicate(predicate_type: str, predicate: Any) -> None:
    """Check a predicate the ledger reads. Raises MalformedError naming the first bad field."""
    if predicate_type in OWNED_PREDICATES:
        errors = _ordered(_validator(predicate_type).iter_errors(predicate))
        if errors:
            described = [_describe(e) for e in errors[:MAX_REPORTED_ERRORS]]
            more = f" (and {len(errors) - MAX_REPORTED_ERRORS} more)" if len(errors) > MAX_REPORTED_ERRORS else ""
            raise MalformedError(f"{predicate_type} predicate does not match its schema: {'; '.join(described)}{more}")
        return
    kind = kind_of(predicate_type)
    if kind in ("build", "sbom") and not isinstance(predicate, dict):
        raise MalformedError(f"a {predicate_type} predicate must be a JSON object")
    if predicate_type == SLSA_V1:
        definition = predicate.get("buildDefinition")
        if definition is not None and not isinstance(definition, dict):
            raise MalformedError("predicate.buildDefinition must be an object")
        deps = (definition or {}).get("resolvedDependencies")
        if deps is not None and not isinstance(deps, list):
            raise MalformedError("predicate.buildDefinition.resolvedDependencies must be a list")
    elif predicate_type == SLSA_V02:
        materials = predicate.get("materials")
        if materials is not None and not isinstance(materials, list):
            raise MalformedError("predicate.materials must be a list")
