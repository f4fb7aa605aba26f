"""Reading a stored notification's fields back from the exact body that was received.

Only bodies that ``verify.form.parse_form`` accepted are ever stored, with the charset it decoded
them in: every ``%`` starts a valid escape, every key is printable ASCII and appears once, and
every value decodes strictly. What is left to read them back is the decoding alone, so storage
needs nothing of the verifier (tests/storage/test_stored_form.py holds the two to the same
answer).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def stored_form_fields(raw_body: bytes, charset: str) -> dict[str, str]:
    """The fields of a verified form body, in wire order, decoded in the charset it was
    verified in (``+`` is a space, as in every form body).

    Every event pushed on reads a notification's fields, so the values are unescaped and
    decoded in one pass, joined by NUL: a verified body holds no NUL, raw or escaped
    (``verify.form``), and no byte of a multi-byte character in these charsets is 0. A body
    kept before that rule, with a NUL in a value, splits into more parts than it has fields and
    is read field by field instead.
    """
    pairs = [segment.partition(b"=") for segment in raw_body.split(b"&") if segment]
    joined = b"\x00".join(value for _, _, value in pairs)
    values = _text(joined, charset).split("\x00")
    if len(values) != len(pairs):
        values = [_text(value, charset) for _, _, value in pairs]
    return {_key(key): value for (key, _, _), value in zip(pairs, values, strict=True)}


def _key(part: bytes) -> str:
    return part.decode("ascii") if b"%" not in part and b"+" not in part else _text(part, "ascii")


def _text(part: bytes, charset: str) -> str:
    return unquote_to_bytes(part.replace(b"+", b" ")).decode(charset)
