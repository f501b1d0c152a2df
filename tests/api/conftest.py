"""Fixtures of the task API tests: every answer the client saw (checked for its error shape
and for secrets at the end), and a client of a real daemon polling the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.simulator import Simulator
from tests.api.api_support import Answer, Client, check_no_secret
from tests.conftest import DaemonFactory


@pytest.fixture
def answers() -> Iterator[list[Answer]]:
    """Every answer of the test; none may carry the API token or the SecretKey."""
    seen: list[Answer] = []
    yield seen
    for answer in seen:
        check_no_secret(answer)


@pytest.fixture
async def api(simulator: Simulator, make_daemon: DaemonFactory, answers: list[Answer]) -> Client:
    return Client(await make_daemon(simulator.url), answers)
