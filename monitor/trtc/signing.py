"""TC3-HMAC-SHA256 request signing, byte for byte as the official SDK does it.

Pure functions only: the client and the simulator both use them, and the tests compare them
with the SDK and with published vectors.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from dataclasses import dataclass

ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json"
SIGNED_HEADERS = "content-type;host"
# Service name in the credential scope: "trtc" whatever the access host.
SERVICE = "trtc"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


@functools.lru_cache(maxsize=64)
def _signing_key(secret_key: str, date: str, service: str) -> bytes:
    """The key derived for one secret, UTC date and service: the same for every request of a
    day, so derived once (three HMACs) rather than on every poll."""
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    return _hmac(_hmac(k_date, service), "tc3_request")


def utc_date(timestamp: int) -> str:
    """The UTC calendar date of a unix timestamp, as YYYY-MM-DD."""
    return _utc_day(timestamp // 86400)


@functools.lru_cache(maxsize=8)
def _utc_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


def credential_scope(timestamp: int, service: str = SERVICE) -> str:
    """The date and service a signature is valid for, as both the signed string and the
    Authorization header name them."""
    return f"{utc_date(timestamp)}/{service}/tc3_request"


def canonical_request(body: bytes, host: str, content_type: str = CONTENT_TYPE) -> str:
    payload_hash = hashlib.sha256(body).hexdigest()
    return (
        f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{SIGNED_HEADERS}\n{payload_hash}"
    )


def string_to_sign(
    body: bytes,
    host: str,
    timestamp: int,
    service: str = SERVICE,
    content_type: str = CONTENT_TYPE,
) -> str:
    digest = hashlib.sha256(canonical_request(body, host, content_type).encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{credential_scope(timestamp, service)}\n{digest}"


def signature(
    secret_key: str,
    body: bytes,
    host: str,
    timestamp: int,
    service: str = SERVICE,
    content_type: str = CONTENT_TYPE,
) -> str:
    """Hex TC3 signature of a POST / request with the given body and host."""
    k_signing = _signing_key(secret_key, utc_date(timestamp), service)
    sts = string_to_sign(body, host, timestamp, service, content_type)
    return hmac.new(k_signing, sts.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str,
    secret_key: str,
    body: bytes,
    host: str,
    timestamp: int,
    service: str = SERVICE,
) -> str:
    """The value of the Authorization header."""
    sig = signature(secret_key, body, host, timestamp, service)
    return (
        f"{ALGORITHM} Credential={secret_id}/{credential_scope(timestamp, service)}, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
    )


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    secret_id: str
    date: str
    service: str
    signed_headers: str
    signature: str


def parse_authorization(header: str) -> ParsedAuthorization | None:
    """Split an Authorization header into its parts; None when it is not TC3 shaped."""
    prefix = ALGORITHM + " "
    if not header.startswith(prefix):
        return None
    parts: dict[str, str] = {}
    for item in header[len(prefix) :].split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            return None
        parts[name] = value
    credential = parts.get("Credential", "").split("/")
    if len(credential) != 4 or credential[3] != "tc3_request":
        return None
    if "SignedHeaders" not in parts or "Signature" not in parts:
        return None
    return ParsedAuthorization(
        secret_id=credential[0],
        date=credential[1],
        service=credential[2],
        signed_headers=parts["SignedHeaders"],
        signature=parts["Signature"],
    )
