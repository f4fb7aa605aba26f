"""Alipay's content encryption as the fakes apply it, with ``cryptography`` directly (never
``verify/``, the code under test): AES-CBC, a zero IV, PKCS#7, base64."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(bytes(16)))


def aes_encrypt(key: bytes, text: str) -> str:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def aes_decrypt(key: bytes, ciphertext: str) -> str:
    """Raises ``ValueError`` (``binascii.Error``, bad padding, ``UnicodeDecodeError``) when
    ``ciphertext`` is not this key's encryption of UTF-8 text."""
    decryptor = _cipher(key).decryptor()
    raw = base64.b64decode(ciphertext, validate=True)
    padded = decryptor.update(raw) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
