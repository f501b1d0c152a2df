"""Shared fixtures: the simulator and a daemon wired to it, both on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http.server import start_server
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
from tests.redis_server import redis_server

__all__ = ["redis_server"]  # a fixture: a real redis-server on a free loopback port

API_TOKEN = "test-api-token-0123456789"


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(seed=1)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@dataclass
class RunningDaemon:
    daemon: Daemon
    url: str
    runner: web.AppRunner
    session: aiohttp.ClientSession

    def auth(self, token: str = API_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def register(
        self, sdk_app_id: int, task_id: str, region: str = "ap-guangzhou", **extra: object
    ) -> aiohttp.ClientResponse:
        body = {"sdk_app_id": sdk_app_id, "task_id": task_id, "region": region, **extra}
        return await self.session.post(f"{self.url}/api/v1/tasks", json=body, headers=self.auth())

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.daemon.stop()


DaemonFactory = Callable[..., Awaitable[RunningDaemon]]


def daemon_config_text(endpoint: str, db: Path, extra: str = "") -> str:
    """A daemon config for tests: simulator credentials from env, fast polling."""
    return f"""
server:
  listen: "127.0.0.1:0"
  api_token_env: TEST_API_TOKEN
storage:
  path: {db}
accounts:
  default:
    secret_id_env: TEST_SECRET_ID
    secret_key_env: TEST_SECRET_KEY
    endpoint: "{endpoint}"
polling:
  interval: 1s
  jitter: 0%
  timeout: 2s
logging:
  format: json
  level: info
{extra}
"""


@pytest.fixture
async def make_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DaemonFactory]:
    """Start daemons against an endpoint; every one is stopped at the end of the test."""
    monkeypatch.setenv("TEST_SECRET_ID", DEFAULT_SECRET_ID)
    monkeypatch.setenv("TEST_SECRET_KEY", DEFAULT_SECRET_KEY)
    monkeypatch.setenv("TEST_API_TOKEN", API_TOKEN)
    started: list[RunningDaemon] = []
    session = aiohttp.ClientSession()

    async def factory(
        endpoint: str = "", extra: str = "", db: Path | None = None, *, text: str | None = None
    ) -> RunningDaemon:
        """A daemon from the test config for ``endpoint``, or from a whole config ``text``."""
        if text is None:
            text = daemon_config_text(endpoint, db or tmp_path / "monitor.db", extra)
        config = parse_config(text)
        daemon = Daemon(config)
        await daemon.start()
        runner, url = await start_server(daemon, config.server.listen)
        running = RunningDaemon(daemon, url, runner, session)
        started.append(running)
        return running

    try:
        yield factory
    finally:
        for running in started:
            if running.daemon.ready:
                await running.stop()
        await session.close()
