"""The public surface of ``verify`` that server/ is written against."""

from __future__ import annotations

import verify
from verify import errors

EXPECTED_CODES: dict[type[errors.VerificationError | errors.KeyMaterialError], str] = {
    errors.MalformedPayload: "malformed",
    errors.UnsupportedSignType: "unsupported_sign_type",
    errors.SignatureMismatch: "bad_signature",
    errors.StaleNotification: "stale",
    errors.DecryptionFailed: "decrypt_failed",
    errors.EncryptionRequired: "encryption_required",
    errors.KeyMaterialError: "invalid_key",
    errors.CertificateChainError: "invalid_certificate",
}


def test_all_exports_resolve_and_are_sorted() -> None:
    assert verify.__all__ == sorted(set(verify.__all__))
    for name in verify.__all__:
        assert getattr(verify, name) is not None


def test_public_api_names() -> None:
    assert {
        "parse_form",
        "FormBody",
        "SignRule",
        "sign_content",
        "sign_content_bytes",
        "load_public_key",
        "load_private_key",
        "public_key_base64",
        "key_fingerprint",
        "SignType",
        "parse_sign_type",
        "sign",
        "verify_signature",
        "load_certificates",
        "cert_sn",
        "root_cert_sn",
        "certificate_public_key",
        "verify_chain",
        "is_expired",
        "load_aes_key",
        "aes_encrypt",
        "aes_decrypt",
        "TrustedKey",
        "VerificationPolicy",
        "VerifiedNotification",
        "verify_notification",
        "check_freshness",
        "parse_notify_time",
    } <= set(verify.__all__)


def test_error_codes_are_stable() -> None:
    for cls, code in EXPECTED_CODES.items():
        assert cls.code == code
        assert getattr(verify, cls.__name__) is cls
    assert issubclass(errors.CertificateChainError, errors.KeyMaterialError)
    assert not issubclass(errors.KeyMaterialError, errors.VerificationError)
