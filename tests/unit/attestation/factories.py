"""Test CAs and evidence builders in the real byte formats (SNP reports, TDX quotes, Nitro
documents, TPM quotes), signed by keys made here. Nothing in this file is vendor material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ledger.attestation import sev_snp, tdx

NOW = datetime(2025, 6, 1, tzinfo=UTC)
NOT_BEFORE = NOW - timedelta(days=365)
NOT_AFTER = NOW + timedelta(days=365)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(der(cert)).hexdigest()


def flip(data: bytes, index: int) -> bytes:
    """``data`` with the byte at ``index`` inverted (negative indexes count from the end)."""
    out = bytearray(data)
    out[index] ^= 0xFF
    return bytes(out)


def make_cert(
    cn: str,
    public_key: Any,
    issuer_cn: str,
    issuer_key: Any,
    *,
    ca: bool,
    pss: bool = False,
    extensions: tuple[x509.ExtensionType, ...] = (),
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    serial: int | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        if pss:
            return builder.sign(
                issuer_key,
                hashes.SHA384(),
                rsa_padding=padding.PSS(padding.MGF1(hashes.SHA384()), 48),
            )
        return builder.sign(issuer_key, hashes.SHA256())
    curve_hash = hashes.SHA384() if issuer_key.curve.key_size == 384 else hashes.SHA256()
    return builder.sign(issuer_key, curve_hash)


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------------------------------------
# AMD SEV-SNP


def _spl(value: int) -> bytes:
    return bytes([0x02, 0x01, value]) if value < 0x80 else bytes([0x02, 0x02, 0x00, value])


def amd_extensions(
    tcb: dict[str, int], hwid: bytes | None, *, wrap_hwid: bool = False
) -> tuple[x509.ExtensionType, ...]:
    exts: list[x509.ExtensionType] = [
        x509.UnrecognizedExtension(sev_snp.OID_PRODUCT_NAME, b"\x16\x08Milan-B0")
    ]
    for name, value in tcb.items():
        exts.append(x509.UnrecognizedExtension(sev_snp.SPL_OIDS[name], _spl(value)))
    if hwid is not None:
        value = bytes([0x04, len(hwid)]) + hwid if wrap_hwid else hwid
        exts.append(x509.UnrecognizedExtension(sev_snp.OID_HWID, value))
    return tuple(exts)


CHIP_ID = bytes(range(64))
MILAN_TCB = {"bl": 3, "tee": 0, "snp": 8, "ucode": 115}


def tcb_bytes(tcb: dict[str, int], product: str = "Milan") -> bytes:
    raw = bytearray(8)
    for name, index in sev_snp._TCB_LAYOUT[product].items():  # noqa: SLF001 - the layout under test
        raw[index] = tcb.get(name, 0)
    return bytes(raw)


@dataclass
class SnpPki:
    """A test ARK → ASK → VCEK and ARK → ASVK → VLEK hierarchy, like AMD's (RSA-PSS, P-384)."""

    product: str = "Milan"
    ark_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    ask_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    asvk_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    vcek_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )

    def __post_init__(self) -> None:
        p = self.product
        self.ark = make_cert(f"ARK-{p}", self.ark_key.public_key(), f"ARK-{p}", self.ark_key, ca=True, pss=True)
        self.ask = make_cert(f"SEV-{p}", self.ask_key.public_key(), f"ARK-{p}", self.ark_key, ca=True, pss=True)
        self.asvk = make_cert(
            f"SEV-VLEK-{p}", self.asvk_key.public_key(), f"ARK-{p}", self.ark_key, ca=True, pss=True
        )
        tcb = MILAN_TCB if p != "Turin" else {**MILAN_TCB, "fmc": 1}
        hwid = CHIP_ID if p != "Turin" else CHIP_ID[:8]
        self.vcek = self.make_vcek(tcb, hwid)
        self.vlek = make_cert(
            "SEV-VLEK", self.vcek_key.public_key(), f"SEV-VLEK-{p}", self.asvk_key, ca=False,
            pss=True, extensions=amd_extensions(tcb, None),
        )
        self.roots = {fingerprint(self.ark): p}

    def make_vcek(self, tcb: dict[str, int], hwid: bytes | None, **kwargs: Any) -> x509.Certificate:
        wrap = kwargs.pop("wrap_hwid", False)
        return make_cert(
            "SEV-VCEK", self.vcek_key.public_key(), f"SEV-{self.product}", self.ask_key,
            ca=False, pss=True, extensions=amd_extensions(tcb, hwid, wrap_hwid=wrap), **kwargs,
        )

    def endorsements(self, *, vlek: bool = False, leaf: x509.Certificate | None = None) -> list[bytes]:
        if vlek:
            return [der(leaf or self.vlek), pem(self.asvk, self.ark)]
        return [der(leaf or self.vcek), pem(self.ask, self.ark)]

    def report(self, **fields: Any) -> bytes:
        tcb = MILAN_TCB if self.product != "Turin" else {**MILAN_TCB, "fmc": 1}
        fields.setdefault("reported_tcb", tcb_bytes(tcb, self.product))
        return build_snp_report(key=self.vcek_key, **fields)


def build_snp_report(
    *,
    key: ec.EllipticCurvePrivateKey | None,
    version: int = 2,
    guest_svn: int = 1,
    policy: int = 0x30000,
    vmpl: int = 0,
    sig_algo: int = 1,
    signing_key: int = 0,
    report_data: bytes = b"",
    measurement: bytes = b"\x11" * 48,
    host_data: bytes = b"\x22" * 32,
    reported_tcb: bytes = b"",
    chip_id: bytes = CHIP_ID,
    cpuid: bytes = b"\x19\x01\x01",
) -> bytes:
    """An ATTESTATION_REPORT in the AMD layout, signed with ``key`` (R, S little-endian)."""
    body = bytearray(sev_snp.SIGNED_SIZE)
    struct.pack_into("<IIQ", body, 0, version, guest_svn, policy)
    struct.pack_into("<II", body, 0x30, vmpl, sig_algo)
    body[0x38:0x40] = reported_tcb
    struct.pack_into("<I", body, 0x48, signing_key << 2)
    body[0x50:0x90] = report_data.ljust(64, b"\x00")
    body[0x90:0xC0] = measurement
    body[0xC0:0xE0] = host_data
    body[0x180:0x188] = reported_tcb
    if version >= 3:
        body[0x188:0x18B] = cpuid
    body[0x1A0:0x1E0] = chip_id
    body[0x1E0:0x1E8] = reported_tcb
    signature = bytearray(0x4A0 - sev_snp.SIGNED_SIZE)
    if key is not None:
        r, s = decode_dss_signature(key.sign(bytes(body), ec.ECDSA(hashes.SHA384())))
        signature[0:72] = r.to_bytes(72, "little")
        signature[72:144] = s.to_bytes(72, "little")
    return bytes(body) + bytes(signature)


# --------------------------------------------------------------------------------------------
# Intel TDX


def _p256_raw(signature_der: bytes) -> bytes:
    r, s = decode_dss_signature(signature_der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class TdxPki:
    """A test Intel-like hierarchy: root → platform CA → PCK (all P-256)."""

    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    platform_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    pck_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    att_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        self.root = make_cert("Test SGX Root CA", self.root_key.public_key(), "Test SGX Root CA", self.root_key, ca=True)
        self.platform = make_cert("Test PCK Platform CA", self.platform_key.public_key(), "Test SGX Root CA", self.root_key, ca=True)
        self.pck = make_cert("Test PCK Certificate", self.pck_key.public_key(), "Test PCK Platform CA", self.platform_key, ca=False, serial=4242)
        self.roots = {fingerprint(self.root): "Test SGX Root CA"}

    def crl(self, *, revoked: tuple[int, ...] = (), key: Any = None, now: datetime = NOW) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.platform.subject)
            .last_update(now - timedelta(days=1))
            .next_update(now + timedelta(days=30))
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - timedelta(days=2)).build()
            )
        return builder.sign(key or self.platform_key, hashes.SHA256()).public_bytes(Encoding.DER)

    def quote(
        self,
        *,
        version: int = 4,
        body_type: int = 2,
        td_attributes: int = 0x10000000,
        tee_tcb_svn: bytes = b"\x03\x00\x04" + bytes(13),
        tee_tcb_svn2: bytes | None = None,
        mrtd: bytes = b"\x33" * 48,
        rtmrs: tuple[bytes, ...] = (b"\x40" * 48, b"\x41" * 48, b"\x42" * 48, bytes(48)),
        report_data: bytes = b"",
        qe_mrsigner: bytes = tdx.TD_QE_MRSIGNER,
        qe_isvprodid: int = tdx.TD_QE_ISVPRODID,
        break_binding: bool = False,
        chain_pem: bytes | None = None,
        tee_type: int = 0x81,
        key_type: int = 2,
        cert_type: int = 6,
        inner_type: int = 5,
    ) -> bytes:
        header = struct.pack("<HHI", version, key_type, tee_type) + bytes(4)
        header += bytes.fromhex("939a7233f79c4ca9940a0db3957f0607") + bytes(20)
        body = bytearray(tdx.BODY_SIZES[body_type])
        body[0:16] = tee_tcb_svn
        struct.pack_into("<Q", body, 0x78, td_attributes)
        body[0x88:0xB8] = mrtd
        for i, value in enumerate(rtmrs):
            body[0x148 + 48 * i : 0x178 + 48 * i] = value
        body[0x208:0x248] = report_data.ljust(64, b"\x00")
        if body_type == tdx.TD15_BODY:  # TEE_TCB_SVN2: the module now running (by default the launch one)
            body[584:600] = tee_tcb_svn if tee_tcb_svn2 is None else tee_tcb_svn2
        if version == 5:
            header += struct.pack("<HI", body_type, len(body))
        signed = header + bytes(body)
        att_pub = self.att_key.public_key().public_numbers()
        att_raw = att_pub.x.to_bytes(32, "big") + att_pub.y.to_bytes(32, "big")
        signature = _p256_raw(self.att_key.sign(signed, ec.ECDSA(hashes.SHA256())))
        auth = bytes(range(32))
        qe_report = bytearray(384)
        qe_report[0x80:0xA0] = qe_mrsigner
        struct.pack_into("<H", qe_report, 0x100, qe_isvprodid)
        binding = hashlib.sha256(att_raw + auth).digest()
        if break_binding:
            binding = flip(binding, 0)
        qe_report[0x140:0x160] = binding
        qe_sig = _p256_raw(self.pck_key.sign(bytes(qe_report), ec.ECDSA(hashes.SHA256())))
        chain = chain_pem if chain_pem is not None else pem(self.pck, self.platform, self.root)
        inner = struct.pack("<HI", inner_type, len(chain)) + chain
        qe_cert_data = bytes(qe_report) + qe_sig + struct.pack("<H", len(auth)) + auth + inner
        sig_data = signature + att_raw + struct.pack("<HI", cert_type, len(qe_cert_data)) + qe_cert_data
        return signed + struct.pack("<I", len(sig_data)) + sig_data


# --------------------------------------------------------------------------------------------
# AWS Nitro


@dataclass
class NitroPki:
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    mid_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    leaf_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))

    def __post_init__(self) -> None:
        self.root = make_cert("test.nitro-enclaves", self.root_key.public_key(), "test.nitro-enclaves", self.root_key, ca=True)
        self.mid = make_cert("test.zonal", self.mid_key.public_key(), "test.nitro-enclaves", self.root_key, ca=True)
        # Real leaf certificates live about three hours.
        self.leaf = make_cert(
            "test.enclave", self.leaf_key.public_key(), "test.zonal", self.mid_key, ca=False,
            not_before=NOW - timedelta(hours=1), not_after=NOW + timedelta(hours=2),
        )
        self.roots = {fingerprint(self.root): "test nitro root"}

    def payload(self, **overrides: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "module_id": "i-0123456789abcdef0-enc0123456789abcdef",
            "digest": "SHA384",
            "timestamp": int(NOW.timestamp() * 1000),
            "pcrs": {i: (bytes([0x50 + i]) * 48 if i < 3 else bytes(48)) for i in range(16)},
            "certificate": der(self.leaf),
            "cabundle": [der(self.root), der(self.mid)],
            "public_key": None,
            "user_data": b"user",
            "nonce": b"\x90\x09" * 8,
        }
        payload.update(overrides)
        return payload

    def document(self, *, tag: bool = False, protected: bytes | None = None, **overrides: Any) -> bytes:
        payload = cbor2.dumps(self.payload(**overrides))
        protected = cbor2.dumps({1: -35}) if protected is None else protected
        to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
        r, s = decode_dss_signature(self.leaf_key.sign(to_sign, ec.ECDSA(hashes.SHA384())))
        sign1 = [protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")]
        return cbor2.dumps(cbor2.CBORTag(18, sign1) if tag else sign1)


# --------------------------------------------------------------------------------------------
# TPM 2.0

TPM_SHA1, TPM_SHA256, TPM_SHA384 = 0x0004, 0x000B, 0x000C
AK_ATTRIBUTES = 0x00050072


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def tpmt_public_rsa(key: rsa.RSAPublicKey, *, attributes: int = AK_ATTRIBUTES) -> bytes:
    n = key.public_numbers().n.to_bytes(key.key_size // 8, "big")
    parms = struct.pack(">HHHH", 0x0010, 0x0014, TPM_SHA256, key.key_size) + struct.pack(">I", 0)
    return struct.pack(">HHI", 0x0001, TPM_SHA256, attributes) + _tpm2b(b"") + parms + _tpm2b(n)


def tpmt_public_ecc(key: ec.EllipticCurvePublicKey, *, attributes: int = AK_ATTRIBUTES) -> bytes:
    nums = key.public_numbers()
    parms = struct.pack(">HHHHH", 0x0010, 0x0018, TPM_SHA256, 0x0003, 0x0010)
    unique = _tpm2b(nums.x.to_bytes(32, "big")) + _tpm2b(nums.y.to_bytes(32, "big"))
    return struct.pack(">HHI", 0x0023, TPM_SHA256, attributes) + _tpm2b(b"") + parms + unique


def tpms_attest(
    *, extra_data: bytes, bank: int, indexes: list[int], pcr_digest: bytes, magic: int = 0xFF544347,
    st: int = 0x8018,
) -> bytes:
    bitmap = bytearray(3)
    for i in indexes:
        bitmap[i // 8] |= 1 << (i % 8)
    out = struct.pack(">IH", magic, st) + _tpm2b(b"\x00\x0b" + b"\xaa" * 32) + _tpm2b(extra_data)
    out += struct.pack(">QIIB", 123456, 1, 0, 1) + struct.pack(">Q", 0x2016051100162800)
    out += struct.pack(">I", 1) + struct.pack(">HB", bank, len(bitmap)) + bytes(bitmap)
    return out + _tpm2b(pcr_digest)


@dataclass
class TpmPki:
    root_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    mid_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    rsa_ak: rsa.RSAPrivateKey = field(default_factory=_rsa)
    ec_ak: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        self.root = make_cert("Test TPM Root", self.root_key.public_key(), "Test TPM Root", self.root_key, ca=True)
        self.mid = make_cert("Test TPM Intermediate", self.mid_key.public_key(), "Test TPM Root", self.root_key, ca=True)
        self.rsa_ak_cert = make_cert("rsa ak", self.rsa_ak.public_key(), "Test TPM Intermediate", self.mid_key, ca=False)
        self.ec_ak_cert = make_cert("ec ak", self.ec_ak.public_key(), "Test TPM Intermediate", self.mid_key, ca=False)
        self.roots = frozenset({fingerprint(self.root)})

    def quote(
        self,
        *,
        ak: str = "rsa",
        scheme: str = "rsassa",
        nonce: bytes = b"\x90\x09",
        bank: int = TPM_SHA256,
        pcrs: dict[int, bytes] | None = None,
        digest_pcrs: dict[int, bytes] | None = None,
        **attest_kwargs: Any,
    ) -> dict[str, Any]:
        """One quote in the JSON form; ``digest_pcrs`` (default ``pcrs``) feeds pcrDigest."""
        pcrs = pcrs if pcrs is not None else {i: bytes([i]) * (20 if bank == TPM_SHA1 else 32) for i in range(8)}
        digest_pcrs = digest_pcrs if digest_pcrs is not None else pcrs
        digest = hashlib.sha256(b"".join(digest_pcrs[i] for i in sorted(digest_pcrs))).digest()
        attest = tpms_attest(extra_data=nonce, bank=bank, indexes=sorted(digest_pcrs), pcr_digest=digest, **attest_kwargs)
        if ak == "rsa":
            if scheme == "rsassa":
                sig = self.rsa_ak.sign(attest, padding.PKCS1v15(), hashes.SHA256())
                raw = struct.pack(">HH", 0x0014, TPM_SHA256) + _tpm2b(sig)
            else:
                pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
                sig = self.rsa_ak.sign(attest, pss, hashes.SHA256())
                raw = struct.pack(">HH", 0x0016, TPM_SHA256) + _tpm2b(sig)
        else:
            r, s = decode_dss_signature(self.ec_ak.sign(attest, ec.ECDSA(hashes.SHA256())))
            raw = struct.pack(">HH", 0x0018, TPM_SHA256) + _tpm2b(r.to_bytes(32, "big")) + _tpm2b(s.to_bytes(32, "big"))
        names = {TPM_SHA1: "sha1", TPM_SHA256: "sha256", TPM_SHA384: "sha384"}
        return {
            "attest": base64.b64encode(attest).decode(),
            "signature": base64.b64encode(raw).decode(),
            "pcrs": {names[bank]: {str(i): v.hex() for i, v in pcrs.items()}},
        }

    def evidence(
        self, *, ak: str = "rsa", quotes: list[dict[str, Any]] | None = None,
        ak_cert: x509.Certificate | None = None, attributes: int = AK_ATTRIBUTES,
        with_cert: bool = True,
    ) -> dict[str, Any]:
        public = (
            tpmt_public_rsa(self.rsa_ak.public_key(), attributes=attributes)
            if ak == "rsa"
            else tpmt_public_ecc(self.ec_ak.public_key(), attributes=attributes)
        )
        cert = ak_cert or (self.rsa_ak_cert if ak == "rsa" else self.ec_ak_cert)
        return {
            "format": "provledger-tpm-evidence/v1",
            "ak_public": base64.b64encode(public).decode(),
            "ak_certificate": base64.b64encode(der(cert)).decode() if with_cert else None,
            "intermediates": [base64.b64encode(der(self.mid)).decode()],
            "quotes": quotes if quotes is not None else [self.quote(ak=ak)],
        }


def encode_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


# A tiny protobuf encoder, to build go-tpm-tools Attestation messages from the JSON form.
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _ld(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def to_protobuf(doc: dict[str, Any]) -> bytes:
    banks = {"sha1": TPM_SHA1, "sha256": TPM_SHA256, "sha384": TPM_SHA384}
    out = _ld(1, base64.b64decode(doc["ak_public"]))
    for q in doc["quotes"]:
        ((bank, values),) = q["pcrs"].items()
        pcrs = _varint(1 << 3) + _varint(banks[bank])
        for index, value in values.items():
            pcrs += _ld(2, _varint(1 << 3) + _varint(int(index)) + _ld(2, bytes.fromhex(value)))
        out += _ld(2, _ld(1, base64.b64decode(q["attest"])) + _ld(2, base64.b64decode(q["signature"])) + _ld(3, pcrs))
    out += _ld(3, b"event log, ignored")
    if doc["ak_certificate"]:
        out += _ld(6, base64.b64decode(doc["ak_certificate"]))
    for c in doc["intermediates"]:
        out += _ld(7, base64.b64decode(c))
    return out
