from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from verify.aes import aes_decrypt, aes_encrypt, load_aes_key
from verify.errors import DecryptionFailed, KeyMaterialError

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))
PLAIN = '{"msg":"支付宝 AES 内容","n":1}'


def _independent_encrypt(key: bytes, padded: bytes) -> str:
    """AES-CBC with a zero IV over already padded bytes, straight from cryptography."""
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _pkcs7(data: bytes) -> bytes:
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


@pytest.mark.parametrize("size", [16, 24, 32])
def test_load_aes_key(size: int) -> None:
    key = bytes(range(size))
    text = base64.b64encode(key).decode()
    assert load_aes_key(f" {text[:10]}\n{text[10:]} ") == key


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(base64.b64encode(bytes(15)).decode(), id="15-bytes"),
        pytest.param(base64.b64encode(bytes(17)).decode(), id="17-bytes"),
        pytest.param(base64.b64encode(bytes(64)).decode(), id="64-bytes"),
        pytest.param("not base64!!", id="not-base64"),
        pytest.param("密钥密钥", id="non-ascii"),
    ],
)
def test_load_aes_key_refuses(text: str) -> None:
    with pytest.raises(KeyMaterialError) as info:
        load_aes_key(text)
    assert info.value.code == "invalid_key"


@pytest.mark.parametrize("key", [bytes(range(16)), bytes(range(24)), bytes(range(32))])
@pytest.mark.parametrize("charset", ["utf-8", "gbk", "gb18030"])
def test_encrypt_matches_independent_cipher(key: bytes, charset: str) -> None:
    expected = _independent_encrypt(key, _pkcs7(PLAIN.encode(charset)))
    assert aes_encrypt(key, PLAIN, charset) == expected
    assert aes_decrypt(key, expected, charset) == PLAIN


def test_block_aligned_plaintext_gets_a_full_padding_block() -> None:
    ciphertext = aes_encrypt(KEY, "0123456789abcdef")
    assert len(base64.b64decode(ciphertext)) == 32


def test_empty_plaintext_round_trip() -> None:
    assert aes_decrypt(KEY, aes_encrypt(KEY, "")) == ""


CIPHERTEXT = _independent_encrypt(KEY, _pkcs7(PLAIN.encode()))

BAD_CIPHERTEXTS = {
    "wrong-key": (OTHER_KEY, CIPHERTEXT),
    "bad-padding-zero": (KEY, _independent_encrypt(KEY, b"A" * 15 + b"\x00")),
    "bad-padding-17": (KEY, _independent_encrypt(KEY, b"A" * 15 + b"\x11")),
    "bad-padding-mixed": (KEY, _independent_encrypt(KEY, b"A" * 13 + b"\x01\x02\x03")),
    "not-utf8": (KEY, _independent_encrypt(KEY, _pkcs7(b"\xff\xfe valid padding"))),
    "not-base64": (KEY, "@@" + CIPHERTEXT[2:]),
    "empty": (KEY, ""),
    "not-block-multiple": (KEY, base64.b64encode(bytes(20)).decode()),
    "truncated-base64": (KEY, CIPHERTEXT[:-1]),
}


@pytest.mark.parametrize("case", list(BAD_CIPHERTEXTS))
def test_decrypt_refuses(case: str) -> None:
    key, ciphertext = BAD_CIPHERTEXTS[case]
    with pytest.raises(DecryptionFailed) as info:
        aes_decrypt(key, ciphertext)
    assert info.value.code == "decrypt_failed"
    assert "支付宝" not in str(info.value)


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(33)], ids=["empty", "15", "33"])
def test_wrong_key_size_is_key_material_error(key: bytes) -> None:
    with pytest.raises(KeyMaterialError):
        aes_encrypt(key, PLAIN)
    with pytest.raises(KeyMaterialError):
        aes_decrypt(key, CIPHERTEXT)
