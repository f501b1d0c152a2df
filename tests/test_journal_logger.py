"""The journal's logger is bound once per logging configuration, and still follows every
reconfiguration: a new chain (``configure_logging``, ``capture_logs``) gets the next line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from monitor.events import EventBus, HealthChanged, TaskUpdated
from monitor.journal import subscribe
from monitor.log import configure_logging
from monitor.models import Task


def updated(i: int) -> TaskUpdated:
    task = Task(sdk_app_id=1400000001, task_id=f"t-{i}", region="ap-beijing", account="a")
    return TaskUpdated(task, ("labels",))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


class TestJournalLogger:
    async def test_each_new_chain_gets_the_next_line(self, restore_logging: None) -> None:
        bus = EventBus()
        subscribe(bus)
        with capture_logs() as first:
            await bus.publish(updated(1))
        with capture_logs() as second:
            await bus.publish(updated(2))
        assert [e["task_id"] for e in first] == ["t-1"]
        assert [e["task_id"] for e in second] == ["t-2"]
        stream = io.StringIO()
        configure_logging("json", "info", stream=stream)
        await bus.publish(updated(3))
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["event"], line["task_id"]) for line in lines] == [("task_updated", "t-3")]

    async def test_a_logger_is_made_once_per_configuration_not_per_line(
        self, restore_logging: None
    ) -> None:
        made: list[str | None] = []

        def factory(*args: object) -> logging.Logger:
            name = args[0] if args and isinstance(args[0], str) else None
            made.append(name)
            return logging.getLogger(name or "monitor.tracker")

        stream = io.StringIO()
        configure_logging("json", "info", stream=stream)
        structlog.configure(logger_factory=factory)
        bus = EventBus()
        subscribe(bus)
        for i in range(5):
            await bus.publish(updated(i))
        assert len(stream.getvalue().splitlines()) == 5
        assert len(made) == 1


class TestEveryLineNamesItsTask:
    async def test_updated_failing_and_recovered_lines_say_where_the_task_is_polled(
        self, restore_logging: None
    ) -> None:
        bus = EventBus()
        subscribe(bus)
        task = updated(7).task
        with capture_logs() as lines:
            await bus.publish(updated(7))
            await bus.publish(HealthChanged(task, True, code="AuthFailure", outcome="auth"))
            await bus.publish(HealthChanged(task, False))
        assert [line["event"] for line in lines] == [
            "task_updated",
            "task_polls_failing",
            "task_polls_recovered",
        ]
        for line in lines:
            where = {k: line[k] for k in ("sdk_app_id", "task_id", "account", "region")}
            assert where == {
                "sdk_app_id": 1400000001,
                "task_id": "t-7",
                "account": "a",
                "region": "ap-beijing",
            }
        assert (lines[1]["code"], lines[1]["outcome"]) == ("AuthFailure", "auth")
