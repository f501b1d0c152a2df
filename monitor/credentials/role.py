"""``role_arn``: any source's credentials, exchanged with STS ``AssumeRole`` for the role's.

The base credentials are resolved afresh each time, so a temporary base (a CVM role, OIDC)
is never used past its own expiry; the role's credentials expire on their own schedule."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from monitor.credentials.base import ROLE_SUFFIX, Issued, Source
from monitor.credentials.sts import RoleSession, Sts, assume_role


@dataclass(frozen=True, slots=True)
class AssumeRoleSource:
    """``base``'s credentials exchanged for those of ``role`` at ``sts``."""

    base: Source
    role: RoleSession
    sts: Sts

    @property
    def name(self) -> str:
        return self.base.name + ROLE_SUFFIX

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        base = await self.base.fetch(session)
        issued = await assume_role(
            session, self.sts, self.role, base=base.credentials, source=base.source + ROLE_SUFFIX
        )
        return Issued(
            issued.credentials,
            issued.source,
            issued.expires_at,
            (*issued.extra_secrets, *base.secret_values()),
        )
