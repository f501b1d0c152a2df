"""The ``Sign`` header of TRTC callbacks: base64(HMAC-SHA256(key, raw body)), checked before
anything of the body is read, in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["sign_body", "verify_signature"]


def sign_body(key: str, body: bytes) -> str:
    """``Sign`` as TRTC computes it: standard base64 (padded) of HMAC-SHA256(key, body)."""
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(key: str | None, body: bytes, given: str | None) -> bool:
    """Whether ``given`` signs ``body`` with ``key``; False without a key or a header."""
    if not key or given is None:
        return False
    # "replace" keeps a hostile non-ASCII header from raising; a real signature is pure ASCII.
    return hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), sign_body(key, body).encode("ascii")
    )
