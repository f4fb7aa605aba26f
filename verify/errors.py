"""Why a signature, certificate, key or payload was refused.

Every error carries a stable machine ``code``; ``server/errors.py`` is the only place that
turns a code into an HTTP answer. Messages name the failed check and never contain key
material, signatures or decrypted content.

    VerificationError
    ├── MalformedPayload        malformed              the body is not a well-formed notification
    ├── UnsupportedSignType     unsupported_sign_type  sign_type missing or not accepted for the app
    ├── SignatureMismatch       bad_signature          no trusted key verifies the signature
    ├── StaleNotification       stale                  too old, or too far in the future
    ├── DecryptionFailed        decrypt_failed         AES content could not be decrypted
    └── EncryptionRequired      encryption_required    the app requires AES and the body is plain
    KeyMaterialError            invalid_key            a configured key or certificate is unusable
    └── CertificateChainError   invalid_certificate    a certificate does not chain to the root
"""

from __future__ import annotations

from typing import ClassVar


class VerificationError(Exception):
    """An inbound message was refused. ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "verification_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedPayload(VerificationError):
    code = "malformed"


class UnsupportedSignType(VerificationError):
    code = "unsupported_sign_type"


class SignatureMismatch(VerificationError):
    code = "bad_signature"


class StaleNotification(VerificationError):
    code = "stale"


class DecryptionFailed(VerificationError):
    code = "decrypt_failed"


class EncryptionRequired(VerificationError):
    code = "encryption_required"


class KeyMaterialError(ValueError):
    """Configured key material cannot be used. Raised at load time, never per request."""

    code: ClassVar[str] = "invalid_key"


class CertificateChainError(KeyMaterialError):
    code = "invalid_certificate"
