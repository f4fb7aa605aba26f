"""Parse an ``application/x-www-form-urlencoded`` notification body; encode a request's form.

Alipay signs the *decoded bytes* of each value in the notification's own charset, so the parser
keeps both the exact percent-decoded bytes (for the signature) and the decoded text (for the
application). The ``charset`` field of the body wins over the HTTP header: frameworks that trust
the header alone silently turn GBK bodies into U+FFFD garbage.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from verify.errors import MalformedPayload

__all__ = [
    "MAX_FIELDS",
    "MAX_KEY_LENGTH",
    "FormBody",
    "encode_form",
    "normalize_charset",
    "parse_form",
]

MAX_FIELDS = 256
MAX_KEY_LENGTH = 64
_ECHO_LIMIT = 32

_CHARSETS: Mapping[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gbk": "gbk",
    "gb2312": "gbk",  # GBK is a superset; Alipay's "GB2312" bodies may use GBK-only characters
    "gb18030": "gb18030",
}

# A '%' not followed by two hex digits. unquote_to_bytes() would keep it literally; we refuse it.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_VALID_KEY = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_KEY_LENGTH)
# Bytes of a key that is printable ASCII and needs no unquoting (no '%' or '+'), plus the '&'
# that joins keys: deleting them all from the joined keys leaves nothing when every key is plain.
_PLAIN_KEY_BYTES = bytes(b for b in range(0x20, 0x7F) if b not in b"%+") + b"&"
# quote_plus as a translation table: byte value -> itself, "+" for a space, else its %XX escape.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_QUOTE_PLUS = [
    "+" if b == 0x20 else chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)
]


@dataclass(frozen=True, slots=True)
class FormBody:
    """A parsed form. ``fields`` and ``raw_fields`` share keys and wire order."""

    charset: str
    fields: Mapping[str, str]
    raw_fields: Mapping[str, bytes]


def parse_form(body: bytes, header_charset: str | None = None) -> FormBody:
    """Split, percent-decode and charset-decode a form body.

    Raises MalformedPayload for bad escapes, a NUL character, bad keys, duplicates, too many
    fields, an unsupported charset or bytes that do not decode strictly in the chosen charset.
    """
    if _BAD_ESCAPE.search(body) is not None:
        raise MalformedPayload("malformed percent-escape in form body")
    if b"\x00" in body or b"%00" in body:
        # No charset Alipay uses encodes anything else with a zero byte, and no store can keep
        # a NUL in text on every backend (PostgreSQL refuses it): refused, whatever the field.
        raise MalformedPayload("a form field holds a NUL character")
    raw = _split_pairs(body)
    charset = _choose_charset(raw.get("charset"), header_charset)
    try:
        fields = {key: value.decode(charset) for key, value in raw.items()}
    except UnicodeDecodeError:
        raise MalformedPayload(
            f"field {_undecodable(raw, charset)!r} is not valid {charset}"
        ) from None
    return FormBody(charset=charset, fields=fields, raw_fields=raw)


def normalize_charset(name: str) -> str:
    """Map a declared charset to the codec we decode with; MalformedPayload if unsupported."""
    codec = _CHARSETS.get(name.strip().lower())
    if codec is None:
        raise MalformedPayload(f"unsupported charset {safe_echo(name)}")
    return codec


def safe_echo(value: str) -> str:
    """Quote a short, printable-ASCII value for an error message; hide anything else."""
    if value.isascii() and value.isprintable():
        return repr(value[:_ECHO_LIMIT])
    return "(non-printable value)"


def _split_pairs(body: bytes) -> dict[str, bytes]:
    """Split into ``{key: raw value bytes}``, with list comprehensions and C-level checks only.

    The hot path runs once per request, so per-field Python work is kept to a minimum: all keys
    are checked at once over the ``&``-joined keys, and values are percent-decoded only when
    they contain ``%`` or ``+``.
    """
    pairs = [segment.partition(b"=") for segment in body.split(b"&") if segment]
    if len(pairs) > MAX_FIELDS:
        raise MalformedPayload(f"more than {MAX_FIELDS} fields")
    if not pairs:
        return {}
    raw_keys, _, raw_values = zip(*pairs, strict=True)
    keys = _decode_keys(raw_keys)
    raw = dict(zip(keys, _decode_values(raw_values), strict=True))
    if len(raw) != len(keys):
        raise MalformedPayload(f"duplicate field {_first_duplicate(keys)!r}")
    return raw


def _decode_values(raw_values: tuple[bytes, ...]) -> list[bytes]:
    """Percent-decode every value, in one C call when no value encodes an ``&`` (``%26``).

    Raw values never contain ``&`` (it separates the pairs), so the values joined by ``&`` and
    decoded at once split back into exactly the decoded values unless one of them decodes to
    an ``&`` of its own; those rare bodies are decoded value by value.
    """
    joined = b"&".join(raw_values)
    if b"%26" not in joined:
        return percent_decode(joined).split(b"&")
    return [percent_decode(v) if b"%" in v or b"+" in v else v for v in raw_values]


def _decode_keys(raw_keys: tuple[bytes, ...]) -> list[str]:
    joined = b"&".join(raw_keys)
    plain = not joined.translate(None, _PLAIN_KEY_BYTES)
    if plain and min(map(len, raw_keys)) > 0 and max(map(len, raw_keys)) <= MAX_KEY_LENGTH:
        return joined.decode("ascii").split("&")
    return [_decode_key(raw_key) for raw_key in raw_keys]


def _decode_key(raw_key: bytes) -> str:
    raw_key = percent_decode(raw_key)
    if _VALID_KEY.fullmatch(raw_key) is None:
        raise MalformedPayload(
            f"field name must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return raw_key.decode("ascii")


def percent_decode(part: bytes) -> bytes:
    """``unquote_to_bytes`` with ``+`` as space, in C: quoted-printable decoding does the work.

    Only for input whose every ``%`` starts a valid two-hex-digit escape (``parse_form`` checks
    the whole body first). Literal ``=`` become ``=3D`` and each ``%`` becomes ``=``, so every
    ``=`` that ``a2b_qp`` sees starts an escape it decodes exactly; nothing else is touched.
    """
    return binascii.a2b_qp(part.replace(b"+", b" ").replace(b"=", b"=3D").replace(b"%", b"="))


def _first_duplicate(keys: list[str]) -> str:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no duplicate")  # pragma: no cover - only called with duplicates


def _choose_charset(body_charset: bytes | None, header_charset: str | None) -> str:
    if body_charset is not None and body_charset.strip():
        if not body_charset.isascii():
            raise MalformedPayload("unsupported charset (non-ASCII value)")
        return normalize_charset(body_charset.decode("ascii"))
    if header_charset is not None and header_charset.strip():
        return normalize_charset(header_charset)
    return "utf-8"


def _undecodable(raw: Mapping[str, bytes], charset: str) -> str:
    for key, value in raw.items():
        try:
            value.decode(charset)
        except UnicodeDecodeError:
            return key
    raise AssertionError("every field decodes")  # pragma: no cover - only called on a failure


def encode_form(fields: Mapping[str, str], charset: str = "utf-8") -> bytes:
    """``urllib.parse.urlencode(fields, encoding=charset)``, byte for byte, in C: each value's
    encoded bytes, read as latin-1, go through one ``str.translate``. (urlencode escapes a
    signed request's base64 signature and JSON ``biz_content`` one byte at a time in Python.)"""
    return "&".join(
        f"{_quote_plus(key, charset)}={_quote_plus(value, charset)}"
        for key, value in fields.items()
    ).encode("ascii")


def _quote_plus(text: str, charset: str) -> str:
    return text.encode(charset).decode("latin-1").translate(_QUOTE_PLUS)
