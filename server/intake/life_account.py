"""Life-account (生活号) gateway messages: the console's gateway check and follow/unfollow events.

Both arrive with ``service`` and an XML ``biz_content`` (docs/protocol.md §5). The XML is
untrusted until the signature is verified, so it is parsed with defusedxml (no entities, no
external references) and only ever read for a few known elements.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from server.credentials import AppCredentials
from server.errors import AppNotReady
from server.intake.handlers import Handled, Reply
from server.intake.life_account_xml import (
    LifeAccountMessage,
    parse_life_account_xml,
)
from storage.models import ConsentAction, ConsentEvent, ConsentSource
from verify import (
    MalformedPayload,
    SignType,
    VerifiedNotification,
    check_freshness,
    sign,
)

LIFE_ACCOUNT_CHANNEL = "life_account"
ACCOUNT_TEMPLATE = "account"  # following is consent to the account as a whole
_CHARSET_LABELS = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}


def _message(
    notification: VerifiedNotification, app: AppCredentials, now: datetime
) -> LifeAccountMessage:
    message = parse_life_account_xml(notification.biz_content or "")
    if message.created_at is not None:
        policy = app.policy
        check_freshness(message.created_at, now, policy.max_age, policy.max_future)
    return message


def signed_reply(content: str, key: RSAPrivateKey, sign_type: SignType, charset: str) -> Reply:
    """``<alipay><response>CONTENT</response><sign>…</sign><sign_type>…</sign_type></alipay>``.

    The signature covers CONTENT's bytes in the message charset, made with the app key. We
    write the sign_type we really used (the Java helper always writes RSA).
    """
    label = _CHARSET_LABELS.get(charset, charset.upper())
    signature = sign(key, content.encode(charset), sign_type)
    document = (
        f'<?xml version="1.0" encoding="{label}"?><alipay><response>{content}</response>'
        f"<sign>{signature}</sign><sign_type>{sign_type.value}</sign_type></alipay>"
    )
    return Reply(body=document.encode(charset), content_type="text/xml", charset=label)


def _signing_key(app: AppCredentials) -> RSAPrivateKey:
    if app.app_private_key is None:
        raise AppNotReady(f"app {app.app_id} has no app_private_key to sign its answer with")
    return app.app_private_key


class GatewayCheckHandler:
    """``alipay.service.check``: prove we hold the app key by returning its public half, signed."""

    name = "gateway_check"

    def handle(
        self, notification: VerifiedNotification, app: AppCredentials, now: datetime
    ) -> Handled:
        _message(notification, app, now)
        key = _signing_key(app)
        content = f"<success>true</success><biz_content>{app.app_public_key_base64}</biz_content>"
        return Handled(
            reply=signed_reply(content, key, notification.sign_type, notification.charset)
        )


class LifeAccountEventHandler:
    """``alipay.mobile.public.message.notify``: follow/unfollow become consent events."""

    name = "life_account_event"

    def handle(
        self, notification: VerifiedNotification, app: AppCredentials, now: datetime
    ) -> Handled:
        message = _message(notification, app, now)
        events = _consent_events(message, notification, app.app_id, now)
        if app.life_account_reply == "success":
            return Handled(events=events)
        return Handled(events=events, reply=_ack(message, notification, app, now))


def _consent_events(
    message: LifeAccountMessage, notification: VerifiedNotification, app_id: str, now: datetime
) -> tuple[ConsentEvent, ...]:
    actions = {"follow": ConsentAction.FOLLOW, "unfollow": ConsentAction.UNFOLLOW}
    action = actions.get(message.event_type) if message.msg_type == "event" else None
    if action is None:
        return ()
    if message.user_id is None:
        raise MalformedPayload(f"{message.event_type} event names no user")
    event = ConsentEvent(
        app_id=app_id,
        user_id=message.user_id,
        channel=LIFE_ACCOUNT_CHANNEL,
        template_id=ACCOUNT_TEMPLATE,
        action=action,
        occurred_at=message.created_at or now,
        source=ConsentSource.ALIPAY_NOTIFY,
        evidence=f"notify:{notification.dedupe_key}",
    )
    return (event,)


def _ack(
    message: LifeAccountMessage,
    notification: VerifiedNotification,
    app: AppCredentials,
    now: datetime,
) -> Reply:
    to_user = message.user_id or ""
    content = (
        f"<XML><ToUserId><![CDATA[{to_user}]]></ToUserId><AppId><![CDATA[{app.app_id}]]></AppId>"
        f"<CreateTime>{int(now.timestamp() * 1000)}</CreateTime>"
        "<MsgType><![CDATA[ack]]></MsgType></XML>"
    )
    return signed_reply(content, _signing_key(app), notification.sign_type, notification.charset)
