"""How the poll step takes an account's credentials."""

from __future__ import annotations

from monitor.credentials.base import (
    CODE_NO_CREDENTIALS,
    CODE_UNAVAILABLE,
    CredentialProvider,
    CredentialsError,
)
from monitor.credentials.chain import NoCredentials
from monitor.models import Outcome
from monitor.secrets import Credentials
from monitor.trtc.client import CallResult


async def credentials_for_call(provider: CredentialProvider) -> Credentials | CallResult:
    """The credentials in use, without waiting; only expired ones wait for (at most one)
    refresh. When there are none, the ``auth`` result the call would have had instead: the
    request is not sent, since the service could only refuse it. When no source is present at
    all the code is ``Credentials.NotFound`` and the message names the sources tried."""
    credentials = provider.current()
    if credentials is not None:
        return credentials
    try:
        return await provider.get()
    except NoCredentials as exc:
        return CallResult(Outcome.AUTH, CODE_NO_CREDENTIALS, str(exc))
    except CredentialsError as exc:
        return CallResult(Outcome.AUTH, CODE_UNAVAILABLE, str(exc))
