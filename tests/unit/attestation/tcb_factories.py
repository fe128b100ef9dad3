"""Generated Intel-like TDX collateral: a PCK with the SGX extension, TCB Info and QE Identity JSON
signed by a test "TCB Signing" key under the test root (nothing here is Intel material)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.attestation import tdx
from tests.unit.attestation.factories import NOW, TdxPki, _p256_raw, der, make_cert, pem

SGX = "1.2.840.113741.1.13.1"
FMSPC = bytes.fromhex("50806f000000")
PLATFORM_SVNS = (3, 3, 2, 2, 2, 1, 0, 2) + (0,) * 8
PCESVN = 11


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))


def sgx_extension(*, fmspc: bytes = FMSPC, svns: tuple[int, ...] = PLATFORM_SVNS, pcesvn: int = PCESVN, pce_id: bytes = b"\0\0") -> bytes:
    comps = b"".join(_tlv(0x30, _oid(f"{SGX}.2.{i + 1}") + _int(v)) for i, v in enumerate(svns))
    comps += _tlv(0x30, _oid(f"{SGX}.2.17") + _int(pcesvn))
    comps += _tlv(0x30, _oid(f"{SGX}.2.18") + _tlv(0x04, bytes(svns)))
    items = [
        _tlv(0x30, _oid(f"{SGX}.1") + _tlv(0x04, bytes(16))),
        _tlv(0x30, _oid(f"{SGX}.2") + _tlv(0x30, comps)),
        _tlv(0x30, _oid(f"{SGX}.3") + _tlv(0x04, pce_id)),
        _tlv(0x30, _oid(f"{SGX}.4") + _tlv(0x04, fmspc)),
        _tlv(0x30, _oid(f"{SGX}.5") + _tlv(0x0A, b"\x01")),
    ]
    return _tlv(0x30, b"".join(items))


def level(sgx: tuple[int, ...], pcesvn: int, tdx_svns: tuple[int, ...], status: str, advisories: tuple[str, ...] = (), date: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    out: dict[str, Any] = {
        "tcb": {
            "sgxtcbcomponents": [{"svn": v} for v in sgx],
            "pcesvn": pcesvn,
            "tdxtcbcomponents": [{"svn": v} for v in tdx_svns],
        },
        "tcbDate": date,
        "tcbStatus": status,
    }
    if advisories:
        out["advisoryIDs"] = list(advisories)
    return out


def _tdx16(*head: int) -> tuple[int, ...]:
    return tuple(head) + (0,) * (16 - len(head))


@dataclass
class TcbPki(TdxPki):
    """The test TDX hierarchy plus a PCK with the SGX extension and a TCB Signing certificate."""

    signing_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pck = self.make_pck()
        self.signing = make_cert("Test TCB Signing", self.signing_key.public_key(), "Test SGX Root CA", self.root_key, ca=False)

    def make_pck(self, **ext: Any) -> x509.Certificate:
        return make_cert(
            "Test PCK Certificate", self.pck_key.public_key(), "Test PCK Platform CA", self.platform_key, ca=False,
            serial=4243, extensions=(x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX), sgx_extension(**ext)),),
        )

    def sign_json(self, key: str, body: dict[str, Any], signer: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        text = json.dumps(body, separators=(",", ":"))
        signature = _p256_raw((signer or self.signing_key).sign(text.encode(), ec.ECDSA(hashes.SHA256())))
        return ('{"' + key + '":' + text + ',"signature":"' + signature.hex() + '"}').encode()

    def tcb_info(self, levels: list[dict[str, Any]], *, fmspc: bytes = FMSPC, issued: datetime = NOW - timedelta(days=1),
                 next_update: datetime = NOW + timedelta(days=29), module_identities: list[dict[str, Any]] | None = None,
                 **overrides: Any) -> bytes:
        body: dict[str, Any] = {
            "id": "TDX", "version": 3, "issueDate": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nextUpdate": next_update.strftime("%Y-%m-%dT%H:%M:%SZ"), "fmspc": fmspc.hex(), "pceId": "0000",
            "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tdxModule": {"mrsigner": "00" * 48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"},
        }
        if module_identities is not None:
            body["tdxModuleIdentities"] = module_identities
        body["tcbLevels"] = levels
        body.update(overrides)
        return self.sign_json("tcbInfo", body)

    def qe_identity(self, *, isvsvn_levels: tuple[tuple[int, str], ...] = ((0, "UpToDate"),), issued: datetime = NOW - timedelta(days=1),
                    next_update: datetime = NOW + timedelta(days=29)) -> bytes:
        body = {
            "id": "TD_QE", "version": 2, "issueDate": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nextUpdate": next_update.strftime("%Y-%m-%dT%H:%M:%SZ"), "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "00000000000000000000000000000000", "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": tdx.TD_QE_MRSIGNER.hex().upper(), "isvprodid": tdx.TD_QE_ISVPRODID,
            "tcbLevels": [{"tcb": {"isvsvn": svn}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": s} for svn, s in isvsvn_levels],
        }
        return self.sign_json("enclaveIdentity", body)

    def chain_files(self) -> list[bytes]:
        return [pem(self.signing, self.root)]


#: TCB Info levels, best first, around the default quote's TEE_TCB_SVN 03 00 04 and the PCK above
SGX_OK = PLATFORM_SVNS
SGX_HIGH = (5, 5) + PLATFORM_SVNS[2:]


def levels(current: str = "UpToDate") -> list[dict[str, Any]]:
    """A TCB Info whose level matching the default test platform and quote has status ``current``."""
    return [
        level(SGX_HIGH, PCESVN, _tdx16(3, 0, 4), "UpToDate", date="2025-01-01T00:00:00Z"),
        level(SGX_OK, PCESVN, _tdx16(3, 0, 4), current, ("INTEL-SA-00001",) if current != "UpToDate" else ()),
        level(SGX_OK, 5, _tdx16(2, 0, 1), "OutOfDate", ("INTEL-SA-00002",)),
    ]


__all__ = ["FMSPC", "TcbPki", "der", "level", "levels", "sgx_extension"]
