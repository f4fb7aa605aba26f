"""The XML of life-account (生活号) messages, read for a few known elements only.

The XML is untrusted until the signature is verified (the gateway reads ``AppId`` from it first,
to pick the keys), so it is parsed with defusedxml: no entities, no external references."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from verify import (
    MalformedPayload,
    parse_epoch_millis,
)

_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


_MAX_XML_CHARS = 32768


@dataclass(frozen=True, slots=True)
class LifeAccountMessage:
    app_id: str | None
    user_id: str | None
    created_at: datetime | None
    msg_type: str
    event_type: str


def parse_life_account_xml(text: str) -> LifeAccountMessage:
    root = _parse_xml(text)

    def value(tag: str) -> str:
        element = root.find(tag)
        return (element.text or "").strip() if element is not None else ""

    created = value("CreateTime")
    return LifeAccountMessage(
        app_id=value("AppId") or None,
        user_id=value("FromAlipayUserId") or value("FromUserId") or None,
        created_at=parse_epoch_millis(created) if created else None,
        msg_type=value("MsgType"),
        event_type=value("EventType"),
    )


def xml_fields(text: str) -> dict[str, str]:
    """Every element under the root, by tag, as text (a consumer's view of the message);
    ``MalformedPayload`` when it is not well-formed XML."""
    return {child.tag: (child.text or "").strip() for child in _parse_xml(text)}


def claimed_app_id(biz_content: str | None) -> str | None:
    """The AppId a life-account message names, read before verification to pick the keys."""
    if not biz_content:
        return None
    return parse_life_account_xml(biz_content).app_id


def _parse_xml(text: str) -> ElementTree.Element:
    if len(text) > _MAX_XML_CHARS:
        raise MalformedPayload("biz_content XML is too large")
    try:
        root = SafeElementTree.fromstring(_DECLARATION.sub("", text, count=1))
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        raise MalformedPayload("biz_content is not well-formed XML") from None
    if not isinstance(root, ElementTree.Element):
        raise MalformedPayload("biz_content is not well-formed XML")
    return root
