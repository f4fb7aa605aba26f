"""Reading a stored notification's fields back from the exact body that was received.

Only bodies that ``verify.form.parse_form`` accepted are ever stored, with the charset it decoded
them in: every ``%`` starts a valid escape, every key is printable ASCII and appears once, and
every value decodes strictly. What is left to read them back is the decoding alone, so storage
needs nothing of the verifier (tests/storage/test_stored_form.py holds the two to the same
answer).
"""

from __future__ import annotations

import codecs
from urllib.parse import unquote_to_bytes

# Every byte but the two separators: deleting them leaves a body's skeleton, ``=&=&...=`` when
# each segment holds exactly one ``=`` (the shape the one-pass reading needs).
_NOT_SEPARATORS = bytes(byte for byte in range(256) if byte not in b"=&")


def stored_form_fields(raw_body: bytes, charset: str) -> dict[str, str]:
    """The fields of a verified form body, in wire order, decoded in the charset it was
    verified in (``+`` is a space, as in every form body).

    Every event pushed on reads a notification's fields, so the values are unescaped and
    decoded in one pass, joined by NUL: a verified body holds no NUL, raw or escaped
    (``verify.form``), and no byte of a multi-byte character in these charsets is 0. A body
    kept before that rule, with a NUL in a value, splits into more parts than it has fields and
    is read field by field instead.

    Most bodies are read in one pass over the whole body: where every segment is one ``=``
    between a key and a value (its skeleton is ``=&=&...=``), both separators become NUL and the
    body is unescaped and decoded at once, keys included (a verified key is printable ASCII,
    which every charset here decodes alike). Any other shape is read segment by segment.
    """
    skeleton = raw_body.translate(None, _NOT_SEPARATORS)
    if skeleton == b"=&" * (len(skeleton) // 2) + b"=":
        text = _text(raw_body.replace(b"&", b"\x00").replace(b"=", b"\x00"), charset)
        parts = text.split("\x00")
        if len(parts) == len(skeleton) + 1:  # else a NUL in a value, kept before it was refused
            return dict(zip(parts[::2], parts[1::2], strict=True))
    return _fields_by_segment(raw_body, charset)


def _fields_by_segment(raw_body: bytes, charset: str) -> dict[str, str]:
    pairs = [segment.partition(b"=") for segment in raw_body.split(b"&") if segment]
    if not pairs:
        return {}
    joined = b"\x00".join([value for _, _, value in pairs])
    values = _text(joined, charset).split("\x00")
    if len(values) != len(pairs):
        values = [_text(value, charset) for _, _, value in pairs]
    keys = b"\x00".join([key for key, _, _ in pairs])
    if b"%" in keys or b"+" in keys:
        return {_key(key): value for (key, _, _), value in zip(pairs, values, strict=True)}
    return dict(zip(keys.decode("ascii").split("\x00"), values, strict=True))


def _key(part: bytes) -> str:
    return part.decode("ascii") if b"%" not in part and b"+" not in part else _text(part, "ascii")


def _text(part: bytes, charset: str) -> str:
    """Unescaped and decoded. Every ``%`` of a verified body starts a valid escape, so with no
    backslash in the part, each ``%XX`` becomes ``\\xXX`` for the C unescaper of the codecs
    module, which takes the bulk of a push's reading of its notification off Python's loop over
    escapes; a part holding a backslash (or an escape gone wrong) is read the general way."""
    spaced = part.replace(b"+", b" ")
    if b"\\" not in spaced:
        try:
            return codecs.escape_decode(spaced.replace(b"%", b"\\x"))[0].decode(charset)
        except ValueError:
            pass  # an invalid escape: the general reading says what it is
    return unquote_to_bytes(spaced).decode(charset)
