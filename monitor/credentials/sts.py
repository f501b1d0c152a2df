"""The STS client: ``AssumeRole`` (TC3-signed with service ``sts``) and
``AssumeRoleWithWebIdentity`` (unsigned, as the official SDK sends it).

One attempt per call, explicit timeouts, the answer classified like any other Tencent Cloud
answer. Errors carry the code, message and request id of the answer, never a credential.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from monitor.credentials.base import CredentialsError, Issued
from monitor.secrets import Credentials
from monitor.trtc.client import CallResult, Endpoint, classify_body
from monitor.trtc.signing import CONTENT_TYPE, authorization

STS_VERSION = "2018-08-13"
STS_SERVICE = "sts"
DEFAULT_STS_ENDPOINT = "sts.tencentcloudapi.com"
# The official SDK calls AssumeRole in this region; STS is a global service.
DEFAULT_STS_REGION = "ap-guangzhou"
ASSUME_ROLE = "AssumeRole"
ASSUME_ROLE_WITH_WEB_IDENTITY = "AssumeRoleWithWebIdentity"
DEFAULT_TIMEOUT = 10.0


def parse_answer(result: CallResult, action: str, source: str) -> tuple[Credentials, float]:
    """(credentials, ExpiredTime) from a classified STS answer; CredentialsError otherwise."""
    rid = f" [RequestId: {result.request_id}]" if result.request_id else ""
    if not result.ok:
        detail = f"{result.code}: {result.message}" if result.message else result.code
        raise CredentialsError(source, f"STS {action} failed: {detail}{rid}")
    response = result.response or {}
    creds = response.get("Credentials")
    expired = response.get("ExpiredTime")
    if not isinstance(creds, dict):
        raise CredentialsError(source, f"STS {action} answer has no Credentials{rid}")
    values = [creds.get(k) for k in ("TmpSecretId", "TmpSecretKey", "Token")]
    if not all(isinstance(v, str) and v for v in values):
        raise CredentialsError(source, f"STS {action} answer lacks a credential field{rid}")
    if isinstance(expired, bool) or not isinstance(expired, int | float):
        raise CredentialsError(source, f"STS {action} answer has no ExpiredTime{rid}")
    secret_id, secret_key, token = (str(v) for v in values)
    return Credentials(secret_id, secret_key, token), float(expired)


@dataclass(frozen=True, slots=True)
class Sts:
    """Where STS answers, how long one call may take, and the clock that dates a request."""

    endpoint: Endpoint
    timeout: float = DEFAULT_TIMEOUT
    clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class RoleSession:
    """The role to assume and the session to open in it, as both exchanges ask for them."""

    role_arn: str
    session_name: str
    duration: int  # seconds

    def params(self) -> dict[str, Any]:
        return {
            "RoleArn": self.role_arn,
            "RoleSessionName": self.session_name,
            "DurationSeconds": self.duration,
        }


async def call_sts(
    session: aiohttp.ClientSession,
    sts: Sts,
    *,
    action: str,
    region: str,
    params: Mapping[str, Any],
    credentials: Credentials | None,
    source: str,
) -> Issued:
    """One STS call. ``credentials`` None sends it unsigned (``Authorization: SKIP``)."""
    endpoint = sts.endpoint
    body = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    host = endpoint.host(region)
    timestamp = int(sts.clock())
    headers = {
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": STS_VERSION,
        "X-TC-Region": region,
        "X-TC-Timestamp": str(timestamp),
    }
    if credentials is None:
        headers["Authorization"] = "SKIP"
    else:
        headers["Authorization"] = authorization(
            credentials.secret_id, credentials.secret_key, body, host, timestamp, STS_SERVICE
        )
        if credentials.token:
            headers["X-TC-Token"] = credentials.token
    started = time.monotonic()
    try:
        async with session.post(
            endpoint.url(region),
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=sts.timeout),
        ) as answer:
            raw = await answer.read()
            status = answer.status
    except TimeoutError:
        raise CredentialsError(
            source, f"STS {action} at {endpoint} timed out after {sts.timeout:g}s"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise CredentialsError(
            source, f"STS {action} at {endpoint} failed ({type(exc).__name__})"
        ) from None
    result = classify_body(raw, (), status, time.monotonic() - started)
    creds, expires_at = parse_answer(result, action, source)
    extra = credentials.secret_values() if credentials is not None else []
    web_token = params.get("WebIdentityToken")
    if isinstance(web_token, str):
        extra.append(web_token)
    return Issued(creds, source, expires_at, tuple(extra))


async def assume_role(
    session: aiohttp.ClientSession,
    sts: Sts,
    role: RoleSession,
    *,
    base: Credentials,
    source: str,
    region: str = DEFAULT_STS_REGION,
) -> Issued:
    """The role's credentials, asked for with (and signed by) the ``base`` credentials."""
    return await call_sts(
        session,
        sts,
        action=ASSUME_ROLE,
        region=region,
        params=role.params(),
        credentials=base,
        source=source,
    )


async def assume_role_with_web_identity(
    session: aiohttp.ClientSession,
    sts: Sts,
    role: RoleSession,
    *,
    region: str,
    provider_id: str,
    web_identity_token: str,
    source: str,
) -> Issued:
    """The role's credentials for an OIDC token of ``provider_id`` (the call is unsigned)."""
    params = {"ProviderId": provider_id, "WebIdentityToken": web_identity_token}
    return await call_sts(
        session,
        sts,
        action=ASSUME_ROLE_WITH_WEB_IDENTITY,
        region=region,
        params={**params, **role.params()},
        credentials=None,
        source=source,
    )
