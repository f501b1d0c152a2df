"""The ``env`` source: the standard variables, read at each resolution."""

from __future__ import annotations

import os
from collections.abc import Mapping

import aiohttp

from monitor.credentials.base import ENV, Issued, NotPresent
from monitor.secrets import Credentials

# Names of environment variables, not values.
SECRET_ID_VAR = "TENCENTCLOUD_SECRET_ID"  # noqa: S105
SECRET_KEY_VAR = "TENCENTCLOUD_SECRET_KEY"  # noqa: S105
TOKEN_VAR = "TENCENTCLOUD_SESSION_TOKEN"  # noqa: S105


def absent(env: Mapping[str, str]) -> NotPresent | None:
    """Why the source is not present in ``env`` (the variables not set), or None."""
    missing = [v for v in (SECRET_ID_VAR, SECRET_KEY_VAR) if not env.get(v)]
    return NotPresent(ENV, f"{' and '.join(missing)} not set") if missing else None


class EnvSource:
    name = ENV

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        env = os.environ if self._environ is None else self._environ
        problem = absent(env)
        if problem is not None:
            raise problem
        token = env.get(TOKEN_VAR) or None
        return Issued(Credentials(env[SECRET_ID_VAR], env[SECRET_KEY_VAR], token), ENV)
