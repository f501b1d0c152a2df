"""Replayed callbacks: a signed callback older than ``callbacks.max_age`` changes nothing."""

from __future__ import annotations

import time

import pytest

from monitor.models import Source, Status, TaskKey
from monitor.simulator import (
    Simulator,
)
from tests.conftest import DaemonFactory
from tests.daemon_support import (
    APP,
    CALLBACKS,
    flaky_with_callbacks,
    post_callback,
    stop_body,
)
from tests.support import FlakyStore


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> list[FlakyStore]:
    """Daemons started in this test get a FlakyStore around their SQLite store."""
    return flaky_with_callbacks(monkeypatch)


class TestReplayedCallbacks:
    async def test_a_signed_callback_an_hour_old_changes_nothing_and_is_counted_stale(
        self, simulator: Simulator, make_daemon: DaemonFactory, flaky: list[FlakyStore]
    ) -> None:
        running = await make_daemon(simulator.url, CALLBACKS)
        hour_ago = time.time() - 3600
        status, answer = await post_callback(running, stop_body("t-replayed", at=hour_ago))
        assert status == 403
        assert answer["error"]["code"] == "stale_callback"
        assert len(running.daemon.registry) == 0
        assert running.daemon.metrics.callbacks.labels("302", "stale")._value.get() == 1
        assert await flaky[0].inner.load_tasks() == []

        fresh = time.time() - 60  # within max_age (10m): works as before
        assert await post_callback(running, stop_body("t-fresh", at=fresh)) == (
            200,
            {"status": "ok"},
        )
        history = await running.daemon.tracker.transitions(TaskKey(APP, "t-fresh"))
        assert [(t.to_status, t.source) for t in history][-1] == (Status.EXITED, Source.CALLBACK)

    async def test_max_age_is_configurable(
        self, simulator: Simulator, make_daemon: DaemonFactory, flaky: list[FlakyStore]
    ) -> None:
        running = await make_daemon(simulator.url, CALLBACKS + "  max_age: 30s\n")
        status, _ = await post_callback(running, stop_body("t-1", at=time.time() - 60))
        assert status == 403
        assert len(running.daemon.registry) == 0
