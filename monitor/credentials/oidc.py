"""The ``oidc`` source: TKE workload identity. The pod-identity webhook injects four
variables; the projected token file is rotated by the kubelet, so it is read again at every
resolution, and the token is exchanged with STS ``AssumeRoleWithWebIdentity`` (unsigned)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from monitor.credentials.base import OIDC, CredentialsError, Issued, NotPresent
from monitor.credentials.sts import RoleSession, Sts, assume_role_with_web_identity

REGION_VAR = "TKE_REGION"
PROVIDER_VAR = "TKE_PROVIDER_ID"
TOKEN_FILE_VAR = "TKE_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a variable name
ROLE_VAR = "TKE_ROLE_ARN"
TKE_VARS = (REGION_VAR, PROVIDER_VAR, TOKEN_FILE_VAR, ROLE_VAR)


def absent(env: Mapping[str, str]) -> NotPresent | None:
    """Why the source is not present in ``env`` (the TKE variables not set), or None."""
    missing = [v for v in TKE_VARS if not env.get(v)]
    return NotPresent(OIDC, f"{', '.join(missing)} not set") if missing else None


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            OIDC, f"web identity token file {path} cannot be read ({type(exc).__name__})"
        ) from None
    if not token:
        raise CredentialsError(OIDC, f"web identity token file {path} is empty")
    return token


@dataclass(frozen=True, slots=True)
class OidcSource:
    """The role the TKE variables name, assumed with the projected token at ``sts``.

    ``environ`` defaults to the process's, read at each resolution.
    """

    sts: Sts
    session_name: str
    duration: int
    environ: Mapping[str, str] | None = field(default=None, repr=False)
    name = OIDC

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        env = os.environ if self.environ is None else self.environ
        problem = absent(env)
        if problem is not None:
            raise problem
        token = await asyncio.to_thread(_read_token, env[TOKEN_FILE_VAR])
        return await assume_role_with_web_identity(
            session,
            self.sts,
            RoleSession(env[ROLE_VAR], self.session_name, self.duration),
            region=env[REGION_VAR],
            provider_id=env[PROVIDER_VAR],
            web_identity_token=token,
            source=OIDC,
        )
