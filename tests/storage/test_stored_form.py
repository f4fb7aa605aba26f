"""A stored notification's fields read back exactly as the verifier decoded them at intake."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.models.stored_form import stored_form_fields
from tests.oracle import form_body
from tests.storage.records import notification
from verify.errors import MalformedPayload
from verify.form import parse_form

_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)
_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)


def test_a_record_reads_its_fields_from_its_raw_body() -> None:
    assert notification("n-7").fields == {"notify_id": "n-7", "subject": "语雀空间 500人规模"}


@settings(max_examples=300)
@given(body=st.binary(max_size=600), header=st.none() | st.text(max_size=20))
def test_any_body_the_verifier_accepts_reads_back_as_it_decoded_it(
    body: bytes, header: str | None
) -> None:
    try:
        form = parse_form(body, header)
    except MalformedPayload:
        return
    assert stored_form_fields(body, form.charset) == dict(form.fields)


@settings(max_examples=100)
@given(
    fields=st.dictionaries(_keys, _values, max_size=10),
    charset=st.sampled_from(["utf-8", "gb18030"]),
)
def test_encoded_forms_in_each_charset_read_back_as_the_verifier_decodes_them(
    fields: dict[str, str], charset: str
) -> None:
    body = form_body({k: v for k, v in fields.items() if k != "charset"}, charset)
    form = parse_form(body, charset)
    assert list(stored_form_fields(body, form.charset).items()) == list(form.fields.items())


def test_a_body_kept_before_nul_was_refused_still_reads_field_by_field() -> None:
    body = b"a=x%00y&b=%E4%B8%AD+z&c="
    assert stored_form_fields(body, "utf-8") == {"a": "x\x00y", "b": "中 z", "c": ""}


def test_backslashes_raw_or_escaped_read_as_themselves() -> None:
    body = b"a=%5Cx41%5C%5Cn&b=raw\\x41+%E4%B8%AD&c=%5C"
    assert stored_form_fields(body, "utf-8") == {"a": "\\x41\\\\n", "b": "raw\\x41 中", "c": "\\"}
    assert stored_form_fields(body, "utf-8") == dict(parse_form(body, "utf-8").fields)


def test_segments_with_other_than_one_equals_sign_read_segment_by_segment() -> None:
    # Each has as many "=" as segments, but not one in each: the one-pass reading must not pair
    # the wrong key with the wrong value.
    for body in (b"a=b=c&d", b"d&a=b=c", b"a=%E4%B8%AD=x&b"):
        assert stored_form_fields(body, "utf-8") == dict(parse_form(body, "utf-8").fields)
    assert stored_form_fields(b"a=b=c&d", "utf-8") == {"a": "b=c", "d": ""}
