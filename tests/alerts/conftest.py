"""Fixtures of the alert engine's tests: a real SQLite store, a loopback receiver, and the
engines made on them (stopped at the end)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.metrics import MonitorMetrics
from monitor.store import SqliteStore
from tests.alerts.engine_support import Harness
from tests.support import ManualClock
from tests.test_receivers import Sink, serving


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "monitor.db") as s:
        yield s


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


@pytest.fixture
async def harness(store: SqliteStore) -> AsyncIterator[Harness]:
    h = Harness(store, ManualClock(), MonitorMetrics())
    try:
        yield h
    finally:
        for engine in h.engines:
            await engine.stop()
