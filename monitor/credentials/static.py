"""The ``static`` source: the account's own keys, read from their sources by
``resolve_secrets`` when the configuration is loaded (so a missing one is a configuration
error with its line number)."""

from __future__ import annotations

import aiohttp

from monitor.credentials.base import STATIC, Issued, NotPresent
from monitor.secrets import Credentials


class StaticSource:
    name = STATIC

    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        if self._credentials is None:
            raise NotPresent(STATIC, "no secret_id/secret_key keys in the account")
        # An expiry is not known for a configured session token: it is used as given.
        return Issued(self._credentials, STATIC)
