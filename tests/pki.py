"""Test keys and an Alipay-shaped certificate hierarchy, built with ``cryptography`` only.

Shared by the verify and server tests. Everything is cached per process: RSA generation is slow.
Expected SNs are computed here from the DN strings we wrote (hashlib + the RFC 4514 text), never
through ``verify.certs``, so they are an independent check of it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.x509.oid import NameOID

__all__ = [
    "CertSet",
    "foreign_cert_set",
    "make_cert_set",
    "pkcs1_base64",
    "pkcs8_base64",
    "private_pem_pkcs1",
    "private_pem_pkcs8",
    "public_pem",
    "rsa_key",
    "spki_base64",
]

_KEYS: dict[tuple[int, int], RSAPrivateKey] = {}
_CERT_SETS: dict[str, CertSet] = {}
_CA_OU = "Certification Authority"


def rsa_key(index: int = 0, bits: int = 2048) -> RSAPrivateKey:
    """A distinct RSA key per (index, bits), generated once per process."""
    key = _KEYS.get((index, bits))
    if key is None:
        key = _KEYS[(index, bits)] = rsa.generate_private_key(65537, bits)
    return key


def spki_base64(key: RSAPublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def pkcs1_base64(key: RSAPrivateKey) -> str:
    return _private_der_base64(key, serialization.PrivateFormat.TraditionalOpenSSL)


def pkcs8_base64(key: RSAPrivateKey) -> str:
    return _private_der_base64(key, serialization.PrivateFormat.PKCS8)


def public_pem(key: RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def private_pem_pkcs8(key: RSAPrivateKey) -> str:
    return _private_pem(key, serialization.PrivateFormat.PKCS8)


def private_pem_pkcs1(key: RSAPrivateKey) -> str:
    return _private_pem(key, serialization.PrivateFormat.TraditionalOpenSSL)


@dataclass(frozen=True)
class CertSet:
    root_bundle_pem: bytes  # EC P-384 root (skipped by root SN), then RSA "Test Root R1"
    alipay_cert_pem: bytes  # Alipay leaf, then its "Class 2" intermediate
    app_cert_pem: bytes  # app leaf only (issued by a "Class 1" intermediate)
    alipay_leaf_key: RSAPrivateKey
    app_leaf_key: RSAPrivateKey
    alipay_cert_sn: str
    app_cert_sn: str
    root_cert_sn: str


def make_cert_set(name: str = "default") -> CertSet:
    """An Alipay-shaped hierarchy, cached per ``name`` (different names are unrelated chains)."""
    cert_set = _CERT_SETS.get(name)
    if cert_set is None:
        cert_set = _CERT_SETS[name] = _build_cert_set(name)
    return cert_set


def foreign_cert_set() -> CertSet:
    """A second, unrelated hierarchy: its certificates do not chain to the default root."""
    return make_cert_set("foreign")


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: RSAPrivateKey | ec.EllipticCurvePrivateKey
    cn: str


def _build_cert_set(name: str) -> CertSet:
    now = datetime.now(UTC)
    # CA names are the same in every set: a foreign chain is refused by signature, not by name.
    ec_root = _self_signed_ec_root("Test Root E1", now)
    root = _issue("Test Root R1", None, now, ca=True)
    class1 = _issue("Test Ant Certification Authority Class 1 R1", root, now, ca=True)
    class2 = _issue("Test Ant Certification Authority Class 2 R1", root, now, ca=True)
    alipay = _issue(f"Alipay ({name})-2088000000000001", class2, now, ca=False, ou="Alipay")
    app = _issue(f"2088000000000001-{name}", class1, now, ca=False, ou="Alipay")
    assert isinstance(alipay.key, RSAPrivateKey)
    assert isinstance(app.key, RSAPrivateKey)
    return CertSet(
        root_bundle_pem=_pem(ec_root.cert) + _pem(root.cert),
        alipay_cert_pem=_pem(alipay.cert) + _pem(class2.cert),
        app_cert_pem=_pem(app.cert),
        alipay_leaf_key=alipay.key,
        app_leaf_key=app.key,
        alipay_cert_sn=_expected_sn(class2.cn, alipay.cert.serial_number),
        app_cert_sn=_expected_sn(class1.cn, app.cert.serial_number),
        root_cert_sn=_expected_sn(root.cn, root.cert.serial_number),
    )


def _name(cn: str, ou: str = _CA_OU) -> x509.Name:
    # DER order is most general first, as in Alipay's certificates; RFC 4514 text reverses it.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Ant"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _expected_sn(issuer_cn: str, serial: int) -> str:
    issuer_dn = f"CN={issuer_cn},OU={_CA_OU},O=Test Ant,C=CN"
    return hashlib.md5((issuer_dn + str(serial)).encode(), usedforsecurity=False).hexdigest()


def _issue(
    cn: str, issuer: _Issued | None, now: datetime, *, ca: bool, ou: str = _CA_OU
) -> _Issued:
    key = rsa.generate_private_key(65537, 2048)
    subject = _name(cn, ou)
    lifetime = timedelta(days=3650) if ca else timedelta(days=365)
    builder = _builder(subject, key.public_key(), now, lifetime, ca=ca)
    if issuer is None:
        cert = builder.issuer_name(subject).sign(key, hashes.SHA256())
    else:
        assert isinstance(issuer.key, RSAPrivateKey)
        builder = builder.issuer_name(issuer.cert.subject)
        cert = builder.sign(issuer.key, hashes.SHA256())
    return _Issued(cert, key, cn)


def _self_signed_ec_root(cn: str, now: datetime) -> _Issued:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = _name(cn)
    builder = _builder(subject, key.public_key(), now, timedelta(days=3650), ca=True)
    cert = builder.issuer_name(subject).sign(key, hashes.SHA384())
    return _Issued(cert, key, cn)


def _builder(
    subject: x509.Name,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    now: datetime,
    lifetime: timedelta,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(secrets.randbits(128) | 1)
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_der_base64(key: RSAPrivateKey, fmt: serialization.PrivateFormat) -> str:
    der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
    return base64.b64encode(der).decode("ascii")


def _private_pem(key: RSAPrivateKey, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode(
        "ascii"
    )
