from __future__ import annotations

import pytest

from storage import redacted_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr%40t@db:5432/subgate", "postgresql://app:***@db:5432/subgate"),
        ("postgresql://app@db/subgate", "postgresql://app@db/subgate"),
        ("sqlite:///./data/subgate.db", "sqlite:///./data/subgate.db"),
    ],
)
def test_urls_are_logged_without_their_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
