from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle import form_body, oracle_content
from verify.canonical import SignRule, sign_content, sign_content_bytes
from verify.form import parse_form

FIELDS = {
    "sign": "c2lnbg==",
    "sign_type": "RSA2",
    "b": "2",
    "a": "1",
    "B": "upper sorts first",
    "blank": "   ",
    "empty": "",
    "tabs": "\t\r\n",
    "ideographic": "\u3000",
    "lead": " kept",
    "trail": "kept ",
    "json": '[{"k":"v"}]',
}


def test_v1_drops_sign_and_sign_type() -> None:
    assert sign_content(FIELDS, SignRule.V1) == (
        'B=upper sorts first&a=1&b=2&json=[{"k":"v"}]&lead= kept&trail=kept '
    )


def test_v2_keeps_sign_type() -> None:
    assert sign_content(FIELDS, SignRule.V2) == (
        'B=upper sorts first&a=1&b=2&json=[{"k":"v"}]&lead= kept&sign_type=RSA2&trail=kept '
    )


@pytest.mark.parametrize("rule", list(SignRule), ids=str)
def test_bytes_form_matches_text_form_in_utf8(rule: SignRule) -> None:
    form = parse_form(form_body(FIELDS))
    assert sign_content_bytes(form, rule) == sign_content(FIELDS, rule).encode()


@pytest.mark.parametrize("charset", ["gbk", "gb18030"])
def test_bytes_form_uses_raw_bytes_in_any_charset(charset: str) -> None:
    fields = {"charset": charset, "subject": "支付宝 收款", "sign_type": "RSA2"}
    form = parse_form(form_body(fields, charset))
    expected = sign_content(fields, SignRule.V2).encode(charset)
    assert sign_content_bytes(form, SignRule.V2) == expected


def test_empty_mapping() -> None:
    assert sign_content({}, SignRule.V1) == ""
    assert sign_content_bytes(parse_form(b""), SignRule.V2) == b""


def test_only_dropped_fields() -> None:
    assert sign_content({"sign": "x", "sign_type": "RSA2", "a": " "}, SignRule.V1) == ""


def test_code_point_order() -> None:
    fields = {"a_b": "1", "a": "2", "aB": "3", "A": "4", "a.b": "5"}
    assert sign_content(fields, SignRule.V1) == "A=4&a=2&a.b=5&aB=3&a_b=1"


def test_inputs_are_not_mutated() -> None:
    frozen = MappingProxyType(dict(FIELDS))  # any write attempt would raise
    sign_content(frozen, SignRule.V1)
    form = parse_form(form_body(FIELDS))
    before = (dict(form.fields), dict(form.raw_fields))
    sign_content_bytes(form, SignRule.V1)
    assert (dict(form.fields), dict(form.raw_fields)) == before


_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12
)
_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
) | st.sampled_from(["", " ", "\t", "\u3000", " x", "x "])


@settings(max_examples=300)
@given(
    fields=st.dictionaries(_keys | st.sampled_from(["sign", "sign_type"]), _values, max_size=15),
    rule=st.sampled_from(list(SignRule)),
)
def test_text_form_matches_oracle(fields: dict[str, str], rule: SignRule) -> None:
    assert sign_content(fields, rule) == oracle_content(fields, rule=rule.value)


@settings(max_examples=200)
@given(
    fields=st.dictionaries(_keys, _values, max_size=15),
    rule=st.sampled_from(list(SignRule)),
)
def test_bytes_form_matches_oracle(fields: dict[str, str], rule: SignRule) -> None:
    fields.pop("charset", None)
    form = parse_form(form_body(fields))
    assert sign_content_bytes(form, rule) == oracle_content(fields, rule=rule.value).encode()
