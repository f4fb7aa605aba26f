"""Build the string Alipay signs (Java SDK ``AlipaySignature.getSignCheckContentV1/V2``).

Sort keys by code point, drop ``sign`` (V1: also ``sign_type``), drop pairs whose value is empty or
whitespace-only, keep every other value verbatim (a real notification has a leading space that is
part of the signature), join ``k=v`` with ``&``.

Whitespace-only is decided on the decoded text: ``value and not value.isspace()`` is the same test
as ``value.strip() != ""`` (both use ``str.isspace`` semantics) without allocating.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from verify.form import FormBody

__all__ = ["SignRule", "sign_content", "sign_content_bytes"]


class SignRule(enum.StrEnum):
    """Which keys are left out of the signed content."""

    V1 = "V1"  # drop ``sign`` and ``sign_type`` (payment notify_url)
    V2 = "V2"  # drop only ``sign`` (app gateway, life account, outgoing requests)


_EXCLUDED: Mapping[SignRule, frozenset[str]] = {
    SignRule.V1: frozenset({"sign", "sign_type"}),
    SignRule.V2: frozenset({"sign"}),
}


def sign_content(fields: Mapping[str, str], rule: SignRule) -> str:
    """Text sign content, for requests we sign and for comparisons with other implementations."""
    excluded = _EXCLUDED[rule]
    return "&".join(
        f"{key}={fields[key]}"
        for key in sorted(fields)
        if key not in excluded and _kept(fields[key])
    )


def sign_content_bytes(form: FormBody, rule: SignRule) -> bytes:
    """Byte sign content from the raw wire bytes: exact in any charset, no re-encoding."""
    excluded = _EXCLUDED[rule]
    raw = form.raw_fields
    keys = sorted(key for key, text in form.fields.items() if _kept(text) and key not in excluded)
    return b"&".join([key.encode("ascii") + b"=" + raw[key] for key in keys])


def _kept(value: str) -> bool:
    return bool(value) and not value.isspace()
