from __future__ import annotations

from urllib.parse import unquote_to_bytes, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle import form_body
from verify.errors import MalformedPayload
from verify.form import MAX_FIELDS, FormBody, encode_form, parse_form, percent_decode


def test_parses_fields_in_wire_order_with_raw_bytes() -> None:
    form = parse_form(b"b=2&a=x+y%26z&c=%E4%B8%AD%E6%96%87")
    assert form == FormBody(
        charset="utf-8",
        fields={"b": "2", "a": "x y&z", "c": "中文"},
        raw_fields={"b": b"2", "a": b"x y&z", "c": "中文".encode()},
    )
    assert list(form.fields) == ["b", "a", "c"]
    assert list(form.raw_fields) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"", {}, id="empty-body"),
        pytest.param(b"a=1&&b=2&", {"a": "1", "b": "2"}, id="empty-segments"),
        pytest.param(b"flag&a=1", {"flag": "", "a": "1"}, id="key-without-equals"),
        pytest.param(b"a=", {"a": ""}, id="empty-value"),
        pytest.param(b"a=x=y==", {"a": "x=y=="}, id="split-on-first-equals"),
        pytest.param(b"a=%2B+%20", {"a": "+  "}, id="plus-and-escapes"),
        pytest.param(b"a=%2b%2F", {"a": "+/"}, id="lowercase-hex"),
        pytest.param(b"a=%2520", {"a": "%20"}, id="decoded-once-only"),
        pytest.param(b"my%5Fkey=1", {"my_key": "1"}, id="encoded-key"),
        pytest.param(b"a=+lead", {"a": " lead"}, id="leading-space-kept"),
    ],
)
def test_parse_shapes(body: bytes, expected: dict[str, str]) -> None:
    assert dict(parse_form(body).fields) == expected


@pytest.mark.parametrize(
    ("body", "header", "charset"),
    [
        pytest.param(b"a=1", None, "utf-8", id="default-utf8"),
        pytest.param(b"a=1", "GBK", "gbk", id="header-only"),
        pytest.param(b"a=1", "  ", "utf-8", id="blank-header"),
        pytest.param(b"charset=GBK&a=1", "UTF-8", "gbk", id="body-wins-over-header"),
        pytest.param(b"charset=utf-8&a=1", "gbk", "utf-8", id="body-utf8-wins"),
        pytest.param(b"charset=&a=1", "gb18030", "gb18030", id="blank-body-falls-back"),
        pytest.param(b"charset=UTF8", None, "utf-8", id="utf8-alias"),
        pytest.param(b"charset=gb2312", None, "gbk", id="gb2312-as-gbk"),
        pytest.param(b"charset=GB18030", None, "gb18030", id="gb18030"),
        pytest.param(b"charset=+Utf-8+", None, "utf-8", id="padded-mixed-case"),
    ],
)
def test_charset_choice(body: bytes, header: str | None, charset: str) -> None:
    assert parse_form(body, header).charset == charset


def test_gbk_body_decodes_and_keeps_raw_bytes() -> None:
    raw = "支付宝".encode("gbk")
    form = parse_form(b"charset=GBK&subject=" + raw)  # raw GBK bytes, not even escaped
    assert form.fields["subject"] == "支付宝"
    assert form.raw_fields["subject"] == raw


def test_gb2312_body_may_use_gbk_only_characters() -> None:
    body = form_body({"charset": "gb2312", "name": "镕"}, charset="gbk")  # 镕 is GBK, not GB2312
    assert parse_form(body).fields["name"] == "镕"


@pytest.mark.parametrize(
    ("body", "header"),
    [
        pytest.param(b"charset=latin-1", None, id="unsupported-body-charset"),
        pytest.param(b"a=1", "iso-8859-1", id="unsupported-header-charset"),
        pytest.param(b"charset=%E4%B8%AD", None, id="non-ascii-charset"),
        pytest.param(b"a=%zz", None, id="bad-hex-escape"),
        pytest.param(b"a=1%", None, id="trailing-percent"),
        pytest.param(b"a=%4", None, id="short-escape"),
        pytest.param(b"%=1", None, id="bad-escape-in-key"),
        pytest.param(b"=1", None, id="empty-key"),
        pytest.param(b"k" * 65 + b"=1", None, id="key-too-long"),
        pytest.param(b"%E4%B8%AD=1", None, id="non-ascii-key"),
        pytest.param(b"%01=1", None, id="non-printable-key"),
        pytest.param(b"a=1&a=2", None, id="duplicate-key"),
        pytest.param(b"a=1&a", None, id="duplicate-key-without-value"),
        pytest.param(b"a=%FF", None, id="invalid-utf8"),
        pytest.param(b"charset=gbk&a=%FF", None, id="invalid-gbk"),
        pytest.param(b"a=%C3", None, id="truncated-utf8"),
        pytest.param("&".join(f"k{i}=1" for i in range(257)).encode(), None, id="too-many-fields"),
    ],
)
def test_malformed(body: bytes, header: str | None) -> None:
    with pytest.raises(MalformedPayload) as info:
        parse_form(body, header)
    assert info.value.code == "malformed"


def test_max_fields_accepted() -> None:
    body = "&".join(f"k{i}=1" for i in range(MAX_FIELDS)).encode()
    assert len(parse_form(body).fields) == MAX_FIELDS


def test_max_key_length_accepted() -> None:
    assert parse_form(b"k" * 64 + b"=1").fields == {"k" * 64: "1"}


def test_unsupported_charset_echo_is_truncated() -> None:
    with pytest.raises(MalformedPayload) as info:
        parse_form(b"charset=" + b"x" * 100)
    assert "x" * 32 in info.value.message
    assert "x" * 33 not in info.value.message


def test_unsupported_charset_echo_hides_non_printable() -> None:
    with pytest.raises(MalformedPayload) as info:
        parse_form(b"a=1", "bad\ncharset")
    assert "bad" not in info.value.message


def test_undecodable_value_is_not_echoed() -> None:
    with pytest.raises(MalformedPayload) as info:
        parse_form(b"secret=abc%FFdef")
    assert "abc" not in info.value.message
    assert "secret" in info.value.message


@settings(max_examples=300)
@given(body=st.binary(max_size=600), header=st.none() | st.text(max_size=20))
def test_arbitrary_bytes_only_raise_malformed(body: bytes, header: str | None) -> None:
    try:
        form = parse_form(body, header)
    except MalformedPayload:
        return
    assert form.fields.keys() == form.raw_fields.keys()


_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)
_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)


@settings(max_examples=200)
@given(fields=st.dictionaries(_keys, _values, max_size=20))
def test_round_trip_of_encoded_form(fields: dict[str, str]) -> None:
    fields = {k: v for k, v in fields.items() if k != "charset"}
    body = form_body(fields)
    assert dict(parse_form(body).fields) == fields


@settings(max_examples=100)
@given(fields=st.dictionaries(_keys, _values, max_size=10))
def test_round_trip_gb18030(fields: dict[str, str]) -> None:
    fields = {k: v for k, v in fields.items() if k != "charset"} | {"charset": "GB18030"}
    form = parse_form(form_body(fields, "gb18030"))
    assert form.charset == "gb18030"
    assert dict(form.fields) == fields


def _reference_raw_fields(body: bytes) -> dict[str, bytes]:
    """The obvious, slow implementation the fast paths must agree with."""
    pairs = (s.partition(b"=") for s in body.split(b"&") if s)
    return {
        unquote_to_bytes(k.replace(b"+", b" ")).decode("ascii"): unquote_to_bytes(
            v.replace(b"+", b" ")
        )
        for k, _, v in pairs
    }


_body_bytes = st.lists(
    st.sampled_from([b"a", b"B", b"=", b"&", b"%41", b"%2b", b"+", b"%E4", b" ", b"%26", b"%3D"])
)


@settings(max_examples=300)
@given(parts=_body_bytes)
def test_fast_paths_agree_with_reference(parts: list[bytes]) -> None:
    body = b"".join(parts)
    try:
        form = parse_form(body, "gb18030")
    except MalformedPayload:
        return
    assert dict(form.raw_fields) == _reference_raw_fields(body)


_escape_parts = st.lists(
    st.sampled_from([b"%41", b"%3D", b"%3d", b"%0A", b"%FF", b"%25", b"%2B", b"%26"])
    | st.binary(max_size=4).filter(lambda part: b"%" not in part)
)


@settings(max_examples=500)
@given(parts=_escape_parts)
def test_percent_decode_equals_unquote_to_bytes(parts: list[bytes]) -> None:
    """The C fast path (quoted-printable) against the stdlib, on any bytes with valid escapes:
    literal '=', '_', CR/LF and non-ASCII bytes included."""
    value = b"".join(parts)
    assert percent_decode(value) == unquote_to_bytes(value.replace(b"+", b" "))


_any_text = st.text(  # no surrogates, no NUL (refused: tests/server/test_nul_characters.py)
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=80
)


@settings(max_examples=300)
@given(fields=st.dictionaries(_any_text, _any_text, max_size=12))
def test_encode_form_is_urlencode_byte_for_byte(fields: dict[str, str]) -> None:
    assert encode_form(fields) == urlencode(fields).encode("ascii")
    assert encode_form(fields, "gb18030") == urlencode(fields, encoding="gb18030").encode("ascii")


def test_encode_form_escapes_what_a_signed_request_carries() -> None:
    fields = {
        "biz_content": '{"data":{"keyword1":{"value":"订单 已发货"}},"page":"a?b=1&c=2"}',
        "sign": "ab+/cd==",
        "timestamp": "2026-12-05 12:00:00",
        "key~._-": "AZaz09~._-",
    }

    encoded = encode_form(fields)

    assert encoded == urlencode(fields).encode("ascii")
    assert b"sign=ab%2B%2Fcd%3D%3D" in encoded
    assert b"timestamp=2026-12-05+12%3A00%3A00" in encoded
    assert b"key~._-=AZaz09~._-" in encoded
    assert parse_form(encoded).fields == fields
