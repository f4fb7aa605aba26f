"""Alipay "interface content encryption": AES-CBC, 16 zero bytes as IV, PKCS#7, base64.

The zero IV is Alipay's protocol (Java ``AesEncrypt``), not a choice of ours; ``AES_V2`` (random IV
prepended) is not used by notifications and is not supported here.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from verify.errors import DecryptionFailed, KeyMaterialError

__all__ = ["AES_KEY_SIZES", "aes_decrypt", "aes_encrypt", "load_aes_key"]

AES_KEY_SIZES = frozenset({16, 24, 32})
_BLOCK_BYTES = 16
_ZERO_IV = bytes(_BLOCK_BYTES)


def load_aes_key(text: str) -> bytes:
    """Decode the console's base64 AES key; it must be 16, 24 or 32 bytes."""
    compact = "".join(text.split())
    try:
        key = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError("expected a base64 AES key") from None
    _require_key_size(key)
    return key


def aes_encrypt(key: bytes, plaintext: str, charset: str = "utf-8") -> str:
    """Encrypt text encoded in ``charset``; returns base64 ciphertext."""
    padder = padding.PKCS7(_BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext.encode(charset)) + padder.finalize()
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def aes_decrypt(key: bytes, ciphertext_b64: str, charset: str = "utf-8") -> str:
    """Decrypt base64 ciphertext; DecryptionFailed for bad base64, length, padding or text."""
    ciphertext = _decode_ciphertext(ciphertext_b64)
    decryptor = _cipher(key).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BYTES * 8).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode(charset)
    except ValueError:  # bad padding, or UnicodeDecodeError (a ValueError subclass)
        raise DecryptionFailed("content could not be decrypted") from None


def _decode_ciphertext(ciphertext_b64: str) -> bytes:
    try:
        ciphertext = base64.b64decode(ciphertext_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed("ciphertext is not valid base64") from None
    if not ciphertext or len(ciphertext) % _BLOCK_BYTES:
        raise DecryptionFailed("ciphertext length is not a positive multiple of 16")
    return ciphertext


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    _require_key_size(key)
    return Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV))


def _require_key_size(key: bytes) -> None:
    if len(key) not in AES_KEY_SIZES:
        raise KeyMaterialError("AES key must be 16, 24 or 32 bytes")
