"""Take secrets out of text that leaves the library: error messages, verdict errors, logs.

One place for it, so every backend and every message builder strips the same things:

- credentials in URLs: ``http://user:pass@host/v1`` becomes ``http://***@host/v1``;
- bearer and basic tokens: ``Authorization: Bearer abc`` becomes ``Authorization: Bearer ***``;
- ``key=value`` secrets (``api_key=``, ``token:``, ``password=``... in query strings, JSON and
  logs) keep their name and lose their value;
- OpenAI-style keys (``sk-...``);
- any exact string passed in ``secrets`` (a backend passes its own API key and header values).

>>> redact("connection to http://bob:hunter2@10.0.0.5:8000/v1 failed")
'connection to http://***@10.0.0.5:8000/v1 failed'
>>> redact('{"detail": "bad header Authorization: Bearer sk-abcdefghijklmnopqrstuvwx"}')
'{"detail": "bad header Authorization: Bearer ***"}'
>>> redact("GET /v1/models?api_key=s3cr3t&x=1")
'GET /v1/models?api_key=***&x=1'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact", "redact_url"]

MASK = "***"

# scheme://userinfo@ : everything between "//" and the last "@" before the path.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s?#@]*(?:@[^/\s?#@]*)*@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
_AUTHORIZATION = re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:[a-z]+\s+)?)[^\s\"',;}]+")
# a name ending in key/token/secret/password ("api_key", "x-api-key", "access_token"), then ":" or "="
_KEY_VALUE = re.compile(
    r"(?i)\b([\w\-]*?(?:api[_\-]?key|token|secret|password|passwd))\b"
    r"([\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}\]]+)"
)
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (any object: its ``str``) with URL credentials, tokens and ``secrets`` masked."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:  # a 1-3 character "secret" would mask ordinary words
            out = out.replace(secret, MASK)
    out = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", out)
    out = _BEARER.sub(lambda m: m.group(1) + MASK, out)
    out = _AUTHORIZATION.sub(lambda m: m.group(1) + MASK, out)
    out = _KEY_VALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, out)
    return _OPENAI_KEY.sub("sk-" + MASK, out)


def redact_url(url: str) -> str:
    """``url`` for display: no user or password, no query string (keys travel there), no fragment.

    >>> redact_url("https://user:pw@gpu-host:8000/v1?key=abc")
    'https://gpu-host:8000/v1'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:  # an unparsable URL (bad port...): mask what the patterns find
        return redact(url)
