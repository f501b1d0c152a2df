"""The ``cvm_role`` source: the CVM instance metadata service. Plain HTTP reachable only from
the instance: first the role name, then that role's temporary credentials. Unlike the official
SDK's ``urlopen`` calls, every request has a timeout and every failure is reported."""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp

from monitor.credentials.base import CVM_ROLE, CredentialsError, Issued, NotPresent
from monitor.secrets import Credentials

DEFAULT_METADATA_ENDPOINT = "http://metadata.tencentyun.com"
CREDENTIALS_PATH = "/latest/meta-data/cam/security-credentials/"
DEFAULT_TIMEOUT = 3.0
# The role list and a credentials document are small; anything larger is not the service.
MAX_BODY = 64 * 1024


class CvmRoleSource:
    name = CVM_ROLE

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._base = endpoint.rstrip("/") + CREDENTIALS_PATH
        self._shown = endpoint.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_s = timeout

    async def _get(self, session: aiohttp.ClientSession, url: str, what: str) -> tuple[int, bytes]:
        try:
            async with session.get(url, timeout=self._timeout, allow_redirects=False) as answer:
                raw = await answer.content.read(MAX_BODY + 1)
                return answer.status, raw
        except TimeoutError:
            raise CredentialsError(
                CVM_ROLE,
                f"metadata service {self._shown} did not answer the {what} within "
                f"{self._timeout_s:g}s",
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.ClientConnectionError) as exc:
            # Off a CVM the host does not resolve or nothing listens: not an instance here.
            raise NotPresent(
                CVM_ROLE, f"metadata service {self._shown} unreachable ({type(exc).__name__})"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CredentialsError(
                CVM_ROLE, f"metadata service {self._shown} failed ({type(exc).__name__})"
            ) from None

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        status, raw = await self._get(session, self._base, "role name")
        if status == 404:
            raise NotPresent(CVM_ROLE, f"no CAM role bound to this instance ({self._shown})")
        if status != 200 or len(raw) > MAX_BODY:
            raise CredentialsError(CVM_ROLE, f"metadata role list answered HTTP {status}")
        lines = raw.decode("utf-8", "replace").split()
        if not lines:
            raise NotPresent(CVM_ROLE, f"no CAM role bound to this instance ({self._shown})")
        role = lines[0]
        status, raw = await self._get(session, self._base + quote(role, safe=""), "credentials")
        if status != 200 or len(raw) > MAX_BODY:
            raise CredentialsError(
                CVM_ROLE, f"metadata credentials of role {role} answered HTTP {status}"
            )
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise CredentialsError(
                CVM_ROLE, f"metadata credentials of role {role} are not JSON"
            ) from None
        if not isinstance(doc, dict) or doc.get("Code") != "Success":
            code = doc.get("Code") if isinstance(doc, dict) else None
            raise CredentialsError(
                CVM_ROLE, f"metadata credentials of role {role}: Code {code!r}, not Success"
            )
        values = [doc.get(k) for k in ("TmpSecretId", "TmpSecretKey", "Token")]
        expired = doc.get("ExpiredTime")
        if (
            not all(isinstance(v, str) and v for v in values)
            or isinstance(expired, bool)
            or (not isinstance(expired, int | float))
        ):
            raise CredentialsError(CVM_ROLE, f"metadata credentials of role {role} lack a field")
        secret_id, secret_key, token = (str(v) for v in values)
        return Issued(Credentials(secret_id, secret_key, token), CVM_ROLE, float(expired))
