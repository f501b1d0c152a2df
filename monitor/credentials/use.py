"""How the poll step takes an account's credentials."""

from __future__ import annotations

from monitor.credentials.base import CODE_UNAVAILABLE, CredentialProvider, CredentialsError
from monitor.models import Outcome
from monitor.secrets import Credentials
from monitor.trtc.client import CallResult


async def credentials_for_call(provider: CredentialProvider) -> Credentials | CallResult:
    """The credentials in use, without waiting; only expired ones wait for (at most one)
    refresh. When there are none, the ``auth`` result the call would have had instead: the
    request is not sent, since the service could only refuse it."""
    credentials = provider.current()
    if credentials is not None:
        return credentials
    try:
        return await provider.get()
    except CredentialsError as exc:
        return CallResult(Outcome.AUTH, CODE_UNAVAILABLE, str(exc))
