"""Pure verification functions for Alipay notifications: no I/O, no clock, no logging.

Callers read files and the clock and pass text, bytes and ``now`` in. Every refusal is a
``verify.errors`` exception with a stable ``code``.
"""

from verify.aes import aes_decrypt, aes_encrypt, load_aes_key
from verify.canonical import SignRule, sign_content, sign_content_bytes
from verify.certs import (
    cert_sn,
    certificate_public_key,
    is_expired,
    load_certificates,
    root_cert_sn,
    verify_chain,
)
from verify.errors import (
    CertificateChainError,
    DecryptionFailed,
    EncryptionRequired,
    KeyMaterialError,
    MalformedPayload,
    SignatureMismatch,
    StaleNotification,
    UnsupportedSignType,
    VerificationError,
)
from verify.form import FormBody, parse_form
from verify.keys import key_fingerprint, load_private_key, load_public_key, public_key_base64
from verify.notification import (
    TrustedKey,
    VerificationPolicy,
    VerifiedNotification,
    check_freshness,
    parse_epoch_millis,
    parse_notify_time,
    verify_notification,
)
from verify.signing import SignType, parse_sign_type, sign, verify_signature

__all__ = [
    "CertificateChainError",
    "DecryptionFailed",
    "EncryptionRequired",
    "FormBody",
    "KeyMaterialError",
    "MalformedPayload",
    "SignRule",
    "SignType",
    "SignatureMismatch",
    "StaleNotification",
    "TrustedKey",
    "UnsupportedSignType",
    "VerificationError",
    "VerificationPolicy",
    "VerifiedNotification",
    "aes_decrypt",
    "aes_encrypt",
    "cert_sn",
    "certificate_public_key",
    "check_freshness",
    "is_expired",
    "key_fingerprint",
    "load_aes_key",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "parse_epoch_millis",
    "parse_form",
    "parse_notify_time",
    "parse_sign_type",
    "public_key_base64",
    "root_cert_sn",
    "sign",
    "sign_content",
    "sign_content_bytes",
    "verify_chain",
    "verify_notification",
    "verify_signature",
]
