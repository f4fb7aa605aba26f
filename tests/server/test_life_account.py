"""Life-account (生活号) gateway: the console's gateway check, and follow/unfollow as consent.

Replies are signed XML documents; their signatures are checked with the official SDK
(``tests.oracle.oracle_verify``) against the app public key, never with our own verifier.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from storage.models import ConsentAction, ConsentEvent, ConsentSource
from tests.oracle import form_body, oracle_verify
from tests.pki import rsa_key, spki_base64
from tests.server.conftest import APP_ID, Gateway, StartGateway, app_config, make_settings
from tests.server.notifications import (
    digest_dedupe_key,
    life_account_fields,
    life_account_message,
    life_account_xml,
    post,
    signed,
)

USER_ID = "2088000000000001"
APP_KEY = rsa_key(2)  # the app key app_config() configures as app_private_key
SIGNED_REPLY = re.compile(
    r'<\?xml version="1\.0" encoding="(?P<label>[^"]+)"\?>'
    r"<alipay><response>(?P<content>.*)</response>"
    r"<sign>(?P<sign>[A-Za-z0-9+/=]+)</sign><sign_type>(?P<sign_type>[A-Z0-9]+)</sign_type>"
    r"</alipay>",
    re.DOTALL,
)
CODECS = {"GBK": "gbk", "UTF-8": "utf-8", "GB18030": "gb18030"}
DIGESTS = {"RSA2": hashes.SHA256(), "RSA": hashes.SHA1()}  # noqa: S303 - Alipay RSA is SHA1


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def signed_message(
    fields: dict[str, str], *, charset: str = "GBK", sign_type: str = "RSA2"
) -> dict[str, str]:
    return signed(fields, rule="V2", charset=CODECS[charset], sign_type=sign_type)


async def post_message(
    gateway: Gateway, fields: dict[str, str], charset: str = "GBK"
) -> tuple[int, str, bytes, str]:
    response = await gateway.client.post(
        "/alipay/notify",
        data=form_body(fields, CODECS[charset]),
        headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
    )
    body = await response.read()
    return (
        response.status,
        response.headers.get("X-Subgate-Error", ""),
        body,
        response.headers["Content-Type"],
    )


def open_signed_reply(body: bytes, charset: str, sign_type: str) -> str:
    """Check the reply envelope and its signature (official SDK); return the signed CONTENT."""
    text = body.decode(CODECS[charset])
    match = SIGNED_REPLY.fullmatch(text)
    assert match is not None, text
    assert (match["label"], match["sign_type"]) == (charset, sign_type)
    content = match["content"]
    signed_bytes = content.encode(CODECS[charset])
    assert oracle_verify(signed_bytes, match["sign"], APP_KEY.public_key())
    # The SDK accepts SHA-1 and SHA-256 alike; pin the digest sign_type announces.
    try:
        APP_KEY.public_key().verify(
            base64.b64decode(match["sign"]), signed_bytes, padding.PKCS1v15(), DIGESTS[sign_type]
        )
    except InvalidSignature:  # pragma: no cover - only on failure
        pytest.fail(f"reply signature is not {sign_type}")
    return content


@pytest.mark.parametrize(
    ("charset", "sign_type"),
    [("GBK", "RSA2"), ("UTF-8", "RSA2"), ("GBK", "RSA"), ("UTF-8", "RSA"), ("GB18030", "RSA2")],
    ids=["gbk-rsa2", "utf8-rsa2", "gbk-rsa", "utf8-rsa", "gb18030-rsa2"],
)
async def test_the_gateway_check_is_answered_with_the_app_public_key_signed_by_the_app_key(
    gateway: Gateway, charset: str, sign_type: str
) -> None:
    fields = signed_message(
        life_account_fields("verifygw", charset=charset), charset=charset, sign_type=sign_type
    )

    status, code, body, content_type = await post_message(gateway, fields, charset)

    assert (status, code) == (200, "")
    assert content_type == f"text/xml; charset={charset}"
    content = open_signed_reply(body, charset, sign_type)
    expected = (
        f"<success>true</success><biz_content>{spki_base64(APP_KEY.public_key())}</biz_content>"
    )
    assert content == expected
    key = digest_dedupe_key(fields, rule="V2", charset=CODECS[charset])
    stored = await gateway.store.get_notification(APP_ID, key)
    assert stored is not None
    assert (stored.kind, stored.handler, stored.rule, stored.sign_type) == (
        "alipay.service.check",
        "gateway_check",
        "V2",
        sign_type,
    )
    assert stored.fields == fields
    assert await gateway.store.consent_events(APP_ID) == []


async def test_the_gbk_gateway_check_reply_is_exactly_the_documented_document(
    gateway: Gateway,
) -> None:
    fields = signed_message(life_account_fields("verifygw"))

    _, _, body, _ = await post_message(gateway, fields)

    prefix = (
        '<?xml version="1.0" encoding="GBK"?><alipay><response><success>true</success>'
        f"<biz_content>{spki_base64(APP_KEY.public_key())}</biz_content></response><sign>"
    )
    assert body.decode("gbk").startswith(prefix)
    assert body.endswith(b"</sign><sign_type>RSA2</sign_type></alipay>")


async def test_follow_then_unfollow_append_two_consent_events_with_their_evidence(
    gateway: Gateway,
) -> None:
    followed_at = gateway.clock.now - timedelta(minutes=2)
    unfollowed_at = gateway.clock.now - timedelta(minutes=1)
    follow = signed_message(life_account_fields("follow", USER_ID, when=followed_at))
    unfollow = signed_message(life_account_fields("unfollow", USER_ID, when=unfollowed_at))

    follow_answer = await post_message(gateway, follow)
    unfollow_answer = await post_message(gateway, unfollow)

    assert [answer[:2] for answer in (follow_answer, unfollow_answer)] == [(200, "")] * 2
    events = await gateway.store.consent_events(APP_ID, USER_ID)
    assert events == [
        ConsentEvent(
            app_id=APP_ID,
            user_id=USER_ID,
            channel="life_account",
            template_id="account",
            action=action,
            occurred_at=moment,
            source=ConsentSource.ALIPAY_NOTIFY,
            evidence=f"notify:{digest_dedupe_key(fields, rule='V2', charset='gbk')}",
        )
        for action, moment, fields in [
            (ConsentAction.FOLLOW, followed_at, follow),
            (ConsentAction.UNFOLLOW, unfollowed_at, unfollow),
        ]
    ]
    for fields in (follow, unfollow):
        key = digest_dedupe_key(fields, rule="V2", charset="gbk")
        stored = await gateway.store.get_notification(APP_ID, key)
        assert stored is not None and stored.handler == "life_account_event"


async def test_a_follow_is_answered_with_a_signed_ack_addressed_to_the_user(
    gateway: Gateway,
) -> None:
    fields = signed_message(life_account_fields("follow", USER_ID))

    status, code, body, content_type = await post_message(gateway, fields)

    assert (status, code, content_type) == (200, "", "text/xml; charset=GBK")
    content = open_signed_reply(body, "GBK", "RSA2")
    assert content == (
        f"<XML><ToUserId><![CDATA[{USER_ID}]]></ToUserId><AppId><![CDATA[{APP_ID}]]></AppId>"
        f"<CreateTime>{millis(gateway.clock.now)}</CreateTime>"
        "<MsgType><![CDATA[ack]]></MsgType></XML>"
    )


async def test_a_utf8_rsa_unfollow_is_acked_in_utf8_with_rsa(gateway: Gateway) -> None:
    fields = signed_message(
        life_account_fields("unfollow", USER_ID, charset="UTF-8"), charset="UTF-8", sign_type="RSA"
    )

    status, _, body, content_type = await post_message(gateway, fields, "UTF-8")

    assert (status, content_type) == (200, "text/xml; charset=UTF-8")
    assert f"<ToUserId><![CDATA[{USER_ID}]]>" in open_signed_reply(body, "UTF-8", "RSA")
    assert [e.action for e in await gateway.store.consent_events(APP_ID)] == ["unfollow"]


async def test_an_app_configured_to_reply_success_answers_a_follow_with_success(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        make_settings(tmp_path, apps=[app_config(APP_ID, life_account_reply="success")])
    )
    fields = signed_message(life_account_fields("follow", USER_ID))

    status, code, body, _ = await post_message(gateway, fields)

    assert (status, code, body) == (200, "", b"success")
    assert [e.action for e in await gateway.store.consent_events(APP_ID)] == ["follow"]


async def test_a_success_replying_app_still_answers_the_gateway_check_with_signed_xml(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        make_settings(tmp_path, apps=[app_config(APP_ID, life_account_reply="success")])
    )
    fields = signed_message(life_account_fields("verifygw"))

    status, _, body, _ = await post_message(gateway, fields)

    assert status == 200
    assert "<success>true</success>" in open_signed_reply(body, "GBK", "RSA2")


async def test_a_text_message_is_stored_without_a_consent_event(gateway: Gateway) -> None:
    xml = life_account_xml(user_id=USER_ID, msg_type="text", text="你好，请问 & 怎么退款？")
    fields = signed_message(life_account_message(xml))

    status, code, body, _ = await post_message(gateway, fields)

    assert (status, code) == (200, "")
    open_signed_reply(body, "GBK", "RSA2")
    stored = await gateway.store.get_notification(
        APP_ID, digest_dedupe_key(fields, rule="V2", charset="gbk")
    )
    assert stored is not None and stored.fields == fields
    assert stored.fields["biz_content"] == xml
    assert await gateway.store.consent_events(APP_ID) == []


@pytest.mark.parametrize("event", ["click", "enter"])
async def test_other_life_account_events_are_stored_without_a_consent_event(
    gateway: Gateway, event: str
) -> None:
    fields = signed_message(life_account_message(life_account_xml(user_id=USER_ID, event=event)))

    status, _, _, _ = await post_message(gateway, fields)

    assert status == 200
    assert await gateway.store.count_notifications() == 1
    assert await gateway.store.consent_events(APP_ID) == []


async def test_a_life_account_message_through_the_app_route_is_accepted(gateway: Gateway) -> None:
    fields = signed_message(life_account_fields("follow", USER_ID))

    status, code, _ = await post(
        gateway.client, fields, charset="gbk", header_charset="GBK", path=f"/alipay/notify/{APP_ID}"
    )

    assert (status, code) == (200, "")
    assert len(await gateway.store.consent_events(APP_ID)) == 1


@pytest.mark.parametrize(
    "declaration",
    ['<?xml version="1.0" encoding="GBK"?>', '\n  <?xml version="1.0" encoding="gbk"?>\n'],
    ids=["declaration", "declaration-with-whitespace"],
)
async def test_a_follow_whose_xml_carries_a_declaration_is_recorded(
    gateway: Gateway, declaration: str
) -> None:
    xml = declaration + life_account_xml(user_id=USER_ID, event="follow")
    fields = signed_message(life_account_message(xml))

    status, code, _, _ = await post_message(gateway, fields)

    assert (status, code) == (200, "")
    assert [e.user_id for e in await gateway.store.consent_events(APP_ID)] == [USER_ID]


async def test_an_older_follow_naming_its_user_by_from_user_id_is_recorded(
    gateway: Gateway,
) -> None:
    xml = life_account_xml(user_id="", event="follow").replace(
        "<FromAlipayUserId><![CDATA[]]></FromAlipayUserId>",
        f"<FromUserId><![CDATA[{USER_ID}]]></FromUserId>",
    )
    assert "FromAlipayUserId" not in xml
    fields = signed_message(life_account_message(xml))

    status, _, body, _ = await post_message(gateway, fields)

    assert status == 200
    assert [e.user_id for e in await gateway.store.consent_events(APP_ID)] == [USER_ID]
    assert f"<ToUserId><![CDATA[{USER_ID}]]></ToUserId>" in open_signed_reply(body, "GBK", "RSA2")
