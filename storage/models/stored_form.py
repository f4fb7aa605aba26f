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
    verified in (``+`` is a space, as in every form body)."""
    pairs = (segment.partition(b"=") for segment in raw_body.split(b"&") if segment)
    return {_text(key, "ascii"): _text(value, charset) for key, _, value in pairs}


def _text(part: bytes, charset: str) -> str:
    return unquote_to_bytes(part.replace(b"+", b" ")).decode(charset)
