"""Alipay public-key-certificate mode: certificate SNs and the issuer chain.

SN = md5 hex of (issuer DN in RFC 2253 order + serial in decimal), as Java's
``getIssuerX500Principal().getName() + getSerialNumber()``. The root SN joins the SNs of the
RSA-signed certificates of the root bundle with ``_`` (Java/Node rule: signature algorithm OID
under ``1.2.840.113549.1.1``).
Validity dates play no part in SNs or in the chain walk: callers check expiry separately.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from verify.errors import CertificateChainError, KeyMaterialError
from verify.keys import require_rsa_public_key

__all__ = [
    "MAX_CHAIN_STEPS",
    "cert_sn",
    "certificate_public_key",
    "is_expired",
    "load_certificates",
    "root_cert_sn",
    "verify_chain",
]

MAX_CHAIN_STEPS = 5
_RSA_SIGNATURE_ARC = "1.2.840.113549.1.1."
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_ISSUER_CHECK_ERRORS = (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm)


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every parseable certificate of a PEM file, in file order.

    Parsed block by block: Alipay's root bundle holds an ECDSA certificate that recent
    ``cryptography`` versions refuse, and it must not hide the others.
    """
    certificates = []
    for block in _PEM_BLOCK.finditer(pem):
        try:
            certificates.append(x509.load_pem_x509_certificate(block.group()))
        except ValueError:
            continue
    return certificates


def cert_sn(cert: x509.Certificate) -> str:
    """md5 hex of issuer DN (RFC 4514 string) + decimal serial number."""
    material = cert.issuer.rfc4514_string() + str(cert.serial_number)
    return hashlib.md5(material.encode("utf-8"), usedforsecurity=False).hexdigest()


def root_cert_sn(pem: bytes) -> str:
    """``_``-joined SNs of the RSA-signed certificates of a root bundle, in file order."""
    sns = [
        cert_sn(cert)
        for cert in load_certificates(pem)
        if cert.signature_algorithm_oid.dotted_string.startswith(_RSA_SIGNATURE_ARC)
    ]
    if not sns:
        raise KeyMaterialError("root bundle holds no RSA-signed certificate")
    return "_".join(sns)


def certificate_public_key(cert: x509.Certificate) -> RSAPublicKey:
    """The certificate's RSA public key; KeyMaterialError for SM2/EC or unreadable keys."""
    try:
        key: object = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError("certificate public key cannot be read") from None
    return require_rsa_public_key(key)


def verify_chain(chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]) -> None:
    """Check that ``chain[0]`` chains to one of ``roots`` by issuer signatures.

    ``chain[1:]`` are intermediates shipped with the leaf. Every issuer on the path must be a CA
    (BasicConstraints ``ca=True``): otherwise any merchant's own app certificate, which chains to
    the same root, could vouch for a forged "Alipay" certificate. Dates are not checked.
    """
    if not chain:
        raise CertificateChainError("certificate chain is empty")
    candidates = [*chain[1:], *roots]
    current = chain[0]
    for _ in range(MAX_CHAIN_STEPS):
        if current in roots:
            return
        current = _find_issuer(current, candidates)
    if current in roots:
        return
    raise CertificateChainError(f"no path to a trusted root within {MAX_CHAIN_STEPS} steps")


def is_expired(cert: x509.Certificate, now: datetime) -> bool:
    """True when ``now`` (timezone-aware) is past the certificate's notAfter."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now > cert.not_valid_after_utc


def _find_issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate:
    for candidate in candidates:
        if candidate != cert and _issued(cert, candidate):
            return candidate
    raise CertificateChainError("certificate does not chain to a trusted root")


def _issued(cert: x509.Certificate, candidate: x509.Certificate) -> bool:
    if candidate.subject != cert.issuer or not _is_ca(candidate):
        return False
    try:
        cert.verify_directly_issued_by(candidate)
    except _ISSUER_CHECK_ERRORS:
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.ca
