"""The STS client: ``AssumeRole`` (TC3-signed with service ``sts``) and
``AssumeRoleWithWebIdentity`` (unsigned, as the official SDK sends it).

One attempt per call, explicit timeouts, the answer classified like any other Tencent Cloud
answer. Errors carry the code, message and request id of the answer, never a credential.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
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


async def call_sts(
    session: aiohttp.ClientSession,
    *,
    endpoint: Endpoint,
    action: str,
    region: str,
    params: Mapping[str, Any],
    credentials: Credentials | None,
    source: str,
    request_timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> Issued:
    """One STS call. ``credentials`` None sends it unsigned (``Authorization: SKIP``)."""
    body = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    host = endpoint.host(region)
    timestamp = int(clock())
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
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        ) as answer:
            raw = await answer.read()
            status = answer.status
    except TimeoutError:
        raise CredentialsError(
            source, f"STS {action} at {endpoint} timed out after {request_timeout:g}s"
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
    *,
    endpoint: Endpoint,
    base: Credentials,
    role_arn: str,
    session_name: str,
    duration: int,
    source: str,
    region: str = DEFAULT_STS_REGION,
    request_timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> Issued:
    return await call_sts(
        session,
        endpoint=endpoint,
        action=ASSUME_ROLE,
        region=region,
        params={"RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": duration},
        credentials=base,
        source=source,
        request_timeout=request_timeout,
        clock=clock,
    )


async def assume_role_with_web_identity(
    session: aiohttp.ClientSession,
    *,
    endpoint: Endpoint,
    region: str,
    provider_id: str,
    web_identity_token: str,
    role_arn: str,
    session_name: str,
    duration: int,
    source: str,
    request_timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> Issued:
    return await call_sts(
        session,
        endpoint=endpoint,
        action=ASSUME_ROLE_WITH_WEB_IDENTITY,
        region=region,
        params={
            "ProviderId": provider_id,
            "WebIdentityToken": web_identity_token,
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": duration,
        },
        credentials=None,
        source=source,
        request_timeout=request_timeout,
        clock=clock,
    )
