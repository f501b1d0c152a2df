"""Request signatures of the DingTalk custom robot and the Feishu custom bot.

Pure functions of the secret and the timestamp, exactly as each vendor documents them:

* DingTalk: ``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}")))``,
  sent as the ``timestamp`` and ``sign`` query parameters.
* Feishu: ``sign = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))`` with the
  timestamp in seconds, sent as ``timestamp`` and ``sign`` fields of the JSON body. The
  string-to-sign is the *key* and the message is empty: the opposite of DingTalk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def dingtalk_signature(secret: str, timestamp_ms: int) -> str:
    """The base64 signature (before URL encoding)."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` with ``timestamp`` and ``sign`` set (replacing any there already)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("timestamp", "sign")]
    query += [("timestamp", str(timestamp_ms)), ("sign", dingtalk_signature(secret, timestamp_ms))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def feishu_signature(secret: str, timestamp_s: int) -> str:
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
