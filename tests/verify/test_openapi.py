"""OpenAPI request signing and response verification (real responses, official-SDK oracle)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.oracle import oracle_content, oracle_verify
from tests.pki import rsa_key, spki_base64
from verify import SignType, TrustedKey, load_public_key, sign
from verify.aes import aes_decrypt, aes_encrypt
from verify.errors import MalformedPayload, SignatureMismatch
from verify.openapi import RequestSigner, open_response, raw_node_text, signed_request_params

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "more"
NOW = datetime(2026, 11, 23, 1, 2, 3, tzinfo=UTC)
AES_KEY = bytes(range(16))


def vector(name: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((VECTORS / name).read_text("utf-8"))
    return loaded


def trusted(public_key_b64: str) -> list[TrustedKey]:
    return [TrustedKey(label="alipay", key=load_public_key(public_key_b64))]


def alipay_signed(
    node: str, method: str = "alipay.open.app.mini.templatemessage.send", extra: str = ""
) -> str:
    signature = sign(rsa_key(1), node.encode("utf-8"), SignType.RSA2)
    name = method.replace(".", "_") + "_response"
    return f'{{"{name}":{node}{extra},"sign":"{signature}"}}'


def test_a_real_response_body_verifies_over_its_raw_node() -> None:
    v = vector("response_nodejs_open_file_upload_rsa2.json")

    response = open_response(
        v["raw_response"], "alipay.open.file.upload", trusted(v["alipay_public_key"])
    )

    assert response.signed and response.node["file_id"] == "CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"
    assert raw_node_text(v["raw_response"], v["response_key"]) == v["signed_content"]


def test_a_real_nested_node_verifies_only_as_raw_text() -> None:
    v = vector("response_gopay_sync_rsa2.json")
    body = f'{{"alipay_trade_pay_response":{v["signed_content"]},"sign":"{v["sign"]}"}}'
    reserialised = json.dumps(
        {"alipay_trade_pay_response": json.loads(v["signed_content"]), "sign": v["sign"]}
    )

    response = open_response(body, "alipay.trade.pay", trusted(v["alipay_public_key"]))

    assert response.signed and response.node["fund_bill_list"][0]["fund_channel"] == "PCREDIT"
    with pytest.raises(SignatureMismatch):
        open_response(reserialised, "alipay.trade.pay", trusted(v["alipay_public_key"]))


def test_alipay_cert_sn_between_the_node_and_sign_is_read_and_does_not_break_the_check() -> None:
    node = '{"code":"10000","msg":"Success"}'
    body = alipay_signed(node, extra=',"alipay_cert_sn":"abc123"')

    response = open_response(
        body,
        "alipay.open.app.mini.templatemessage.send",
        trusted(spki_base64(rsa_key(1).public_key())),
    )

    assert response.signed and response.alipay_cert_sn == "abc123"


def test_an_encrypted_node_is_verified_with_its_quotes_then_decrypted() -> None:
    ciphertext = aes_encrypt(AES_KEY, '{"code":"10000","msg":"Success","note":"加密"}')
    body = alipay_signed(json.dumps(ciphertext))

    response = open_response(
        body,
        "alipay.open.app.mini.templatemessage.send",
        trusted(spki_base64(rsa_key(1).public_key())),
        encrypt_key=AES_KEY,
    )

    assert response.node == {"code": "10000", "msg": "Success", "note": "加密"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            '{"alipay_open_app_mini_templatemessage_send_response":{"code":"10000","msg":"Success"},"sign":"AAAA"}',
            SignatureMismatch,
        ),
        ("not json", MalformedPayload),
        ('{"unrelated":{}}', MalformedPayload),
        ('{"alipay_open_app_mini_templatemessage_send_response":{"code":"10000"', MalformedPayload),
    ],
    ids=["bad-signature", "not-json", "no-node", "truncated"],
)
def test_bad_responses_are_refused(body: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_response(
            body,
            "alipay.open.app.mini.templatemessage.send",
            trusted(spki_base64(rsa_key(1).public_key())),
        )


def test_a_tampered_node_is_refused() -> None:
    body = alipay_signed('{"code":"40004","msg":"Business Failed"}').replace("40004", "10000")

    with pytest.raises(SignatureMismatch):
        open_response(
            body,
            "alipay.open.app.mini.templatemessage.send",
            trusted(spki_base64(rsa_key(1).public_key())),
        )


def test_an_unsigned_error_response_is_marked_unsigned() -> None:
    body = (
        '{"error_response":{"code":"40002","msg":"Invalid Arguments",'
        '"sub_code":"isv.invalid-app-id"}}'
    )

    response = open_response(body, "alipay.open.app.mini.templatemessage.send", [])

    assert (response.signed, response.node_name, response.node["sub_code"]) == (
        False,
        "error_response",
        "isv.invalid-app-id",
    )


@pytest.fixture
def host_in_new_york() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("sign_type", ["RSA2", "RSA"])
def test_request_params_verify_with_the_official_sdk_including_sign_type(
    sign_type: str, host_in_new_york: None
) -> None:
    signer = RequestSigner(
        app_id="2021000000000001", private_key=rsa_key(2), sign_type=SignType(sign_type)
    )

    params = signed_request_params(
        signer,
        "alipay.open.app.mini.templatemessage.send",
        {"to_user_id": "2088", "data": '{"k":"值"}'},
        NOW,
    )

    content = oracle_content(params, rule="V2").encode("utf-8")
    assert "sign_type=" + sign_type in content.decode()
    assert oracle_verify(content, params["sign"], rsa_key(2).public_key())
    assert params["timestamp"] == "2026-11-23 09:02:03"  # Beijing, whatever the host's zone
    assert json.loads(params["biz_content"]) == {"to_user_id": "2088", "data": '{"k":"值"}'}


def test_certificate_mode_and_encryption_add_their_params_and_sign_the_ciphertext() -> None:
    signer = RequestSigner(
        app_id="2021000000000001",
        private_key=rsa_key(2),
        app_cert_sn="app-sn",
        alipay_root_cert_sn="root-sn",
        encrypt_key=AES_KEY,
    )

    params = signed_request_params(
        signer, "alipay.open.app.mini.templatemessage.send", {"to_user_id": "2088"}, NOW
    )

    assert (params["app_cert_sn"], params["alipay_root_cert_sn"], params["encrypt_type"]) == (
        "app-sn",
        "root-sn",
        "AES",
    )
    assert json.loads(aes_decrypt(AES_KEY, params["biz_content"])) == {"to_user_id": "2088"}
    assert oracle_verify(
        oracle_content(params, rule="V2").encode(), params["sign"], rsa_key(2).public_key()
    )
