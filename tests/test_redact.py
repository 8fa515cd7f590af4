"""guardrail._redact: what it masks in text that leaves the library, and what it leaves alone."""

from __future__ import annotations

import pytest

from guardrail._redact import redact, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://bob:pw@host:8000/v1", "http://***@host:8000/v1"),
        ("https://token@gpu/v1 and ws://a:b@c:1", "https://***@gpu/v1 and ws://***@c:1"),
        ("http://user:p@ss@host/v1", "http://***@host/v1"),
        ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer ***"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "Basic ***"}'),
        ("/v1/models?api_key=s3cr3t&x=1", "/v1/models?api_key=***&x=1"),
        (
            '{"api_key": "abc", "x-api-key": "def", "client_secret": "ghi"}',
            '{"api_key": "***", "x-api-key": "***", "client_secret": "***"}',
        ),
        ("password=hunter2 token: xyz", "password=*** token: ***"),
        ("key sk-abcdefghijklmnop1234", "key sk-***"),
        # ordinary text is left alone
        ("max_tokens=4096 prompt_tokens: 10", "max_tokens=4096 prompt_tokens: 10"),
        (
            "mail bob@example.com, see https://example.com/a@b",
            "mail bob@example.com, see https://example.com/a@b",
        ),
        ("token limit exceeded", "token limit exceeded"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_redact_given_secrets_and_urls():
    assert redact("key is s3cr3t-value!", ["s3cr3t-value", None, ""]) == "key is ***!"
    assert redact("ab x", ["ab"]) == "ab x"  # too short to mask safely
    assert redact_url("https://u:p@h:8443/v1?key=abc#frag") == "https://h:8443/v1"
    assert redact_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
