"""Temporary secrets are hidden from the logs as soon as they are issued."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from monitor.credentials import RefreshingProvider, new_source
from monitor.log import configure_logging, set_secrets
from monitor.simulator import Simulator
from tests.credentials.credentials_support import WEB_TOKEN, account, tke_env


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("json", "debug", (), stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    set_secrets(())


class TestRedaction:
    async def test_temporary_secrets_are_hidden_from_logs_as_soon_as_they_are_issued(
        self,
        sim: Simulator,
        session: aiohttp.ClientSession,
        tmp_path: Path,
        captured_logs: io.StringIO,
    ) -> None:
        source = new_source(
            account(credentials="oidc", sts_endpoint=sim.url), None, environ=tke_env(tmp_path)
        )
        provider = RefreshingProvider("a", source)
        await provider.start(session)
        try:
            creds = provider.current()
            assert creds is not None
            assert creds.token is not None
            log = structlog.get_logger("test")
            log.error("oops", detail=f"key={creds.secret_key} token={creds.token}", web=WEB_TOKEN)
            logging.getLogger("plain").error("sent %s", creds.token)
        finally:
            await provider.stop()
        text = captured_logs.getvalue()
        assert "credentials_resolved" in text
        assert '"source": "oidc"' in text
        for secret in (creds.secret_key, creds.token, WEB_TOKEN):
            assert secret not in text
        assert text.count("[REDACTED]") >= 4
