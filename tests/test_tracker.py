"""Status and health rules, tested as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.models import Outcome, Source, Status, Task
from monitor.status_rules import (
    HealthChange,
    apply_callback_exit,
    apply_poll,
    apply_removal,
)
from monitor.trtc.client import CallResult


def task(status: Status = Status.PENDING, registered_at: float = 1000.0) -> Task:
    return Task(
        sdk_app_id=1400000001,
        task_id="t-1",
        region="ap-guangzhou",
        account="default",
        registered_at=registered_at,
        status=status,
        status_since=registered_at,
    )


def ok(status: str, request_id: str = "req-ok", files: int = 0) -> CallResult:
    response: dict[str, Any] = {
        "TaskId": "t-1",
        "Status": status,
        "StorageFileList": [{"FileName": f"f{i}.m3u8"} for i in range(files)],
        "RequestId": request_id,
    }
    return CallResult(Outcome.OK, "", request_id=request_id, response=response)


def failed(outcome: Outcome, code: str, request_id: str | None = "req-err") -> CallResult:
    return CallResult(outcome, code, request_id=request_id)


class TestPolls:
    def test_first_observation_moves_pending_to_the_reported_status(self) -> None:
        t = task()
        effect = apply_poll(t, ok("Idle", "req-1"), now=1001.0)
        assert effect.transition is not None
        assert (effect.transition.from_status, effect.transition.to_status) == (
            Status.PENDING,
            Status.IDLE,
        )
        assert effect.transition.request_id == "req-1"
        assert effect.transition.source is Source.POLL
        assert (t.status, t.status_since, t.last_success_at) == (Status.IDLE, 1001.0, 1001.0)

    def test_same_status_again_is_not_a_transition(self) -> None:
        t = task(Status.IN_PROGRESS)
        effect = apply_poll(t, ok("InProgress", files=3), now=1005.0)
        assert effect.transition is None
        assert t.storage_files == 3
        assert t.status_since == 1000.0

    @pytest.mark.parametrize(
        ("outcome", "code"),
        [
            (Outcome.TRANSIENT, "Transport.Timeout"),
            (Outcome.AUTH, "AuthFailure.SignatureFailure"),
            (Outcome.INVALID, "InvalidParameter.TaskId"),
        ],
    )
    def test_errors_never_change_the_status_only_the_health(
        self, outcome: Outcome, code: str
    ) -> None:
        t = task(Status.IN_PROGRESS)
        first = apply_poll(t, failed(outcome, code), now=1001.0)
        second = apply_poll(t, failed(outcome, code), now=1002.0)
        assert first.transition is None
        assert second.transition is None
        assert t.status is Status.IN_PROGRESS
        assert (t.consecutive_errors, t.last_error_code, t.last_error_at) == (2, code, 1002.0)
        assert first.health is HealthChange.FAILING
        assert second.health is None

    def test_success_after_errors_resets_them_and_reports_recovery(self) -> None:
        t = task(Status.IN_PROGRESS)
        apply_poll(t, failed(Outcome.TRANSIENT, "InternalError"), now=1001.0)
        effect = apply_poll(t, ok("InProgress"), now=1002.0)
        assert effect.health is HealthChange.RECOVERED
        assert t.consecutive_errors == 0

    def test_throttled_answers_touch_neither_status_nor_health(self) -> None:
        t = task(Status.IDLE)
        effect = apply_poll(t, failed(Outcome.THROTTLED, "RequestLimitExceeded"), now=1001.0)
        assert effect == type(effect)()
        assert (t.status, t.consecutive_errors, t.last_error_code) == (Status.IDLE, 0, None)

    def test_an_ended_code_ends_a_young_task(self) -> None:
        t = task(Status.EXITED, registered_at=1000.0)
        effect = apply_poll(
            t, failed(Outcome.ENDED, "FailedOperation.TaskNotExist", "req-end"), now=2000.0
        )
        assert effect.transition is not None
        assert effect.transition.to_status is Status.ENDED
        assert effect.transition.detail == {"code": "FailedOperation.TaskNotExist"}
        assert t.ended_at == 2000.0
        assert t.final

    def test_an_ended_code_for_a_task_older_than_resource_expiry_means_expired(self) -> None:
        t = task(Status.IN_PROGRESS, registered_at=0.0)
        effect = apply_poll(t, failed(Outcome.ENDED, "ResourceNotFound"), 72 * 3600.0 + 1, 72.0)
        assert effect.transition is not None
        assert effect.transition.to_status is Status.EXPIRED

    def test_a_late_poll_of_a_final_task_changes_nothing(self) -> None:
        t = task(Status.REMOVED)
        assert apply_poll(t, ok("InProgress"), now=1001.0).transition is None
        assert t.status is Status.REMOVED


class TestRemovalAndCallbacks:
    def test_removal_is_a_transition_from_the_api_once(self) -> None:
        t = task(Status.IN_PROGRESS)
        first = apply_removal(t, now=1010.0)
        assert first is not None
        assert (first.to_status, first.source) == (Status.REMOVED, Source.API)
        assert apply_removal(t, now=1011.0) is None

    def test_callback_exit_records_the_leave_code(self) -> None:
        t = task(Status.IN_PROGRESS)
        transition = apply_callback_exit(t, 1020.0, leave_code=3)
        assert transition is not None
        assert (transition.to_status, transition.source) == (Status.EXITED, Source.CALLBACK)
        assert transition.detail == {"leave_code": 3}

    def test_a_repeated_callback_exit_is_not_a_second_transition(self) -> None:
        t = task(Status.IN_PROGRESS)
        apply_callback_exit(t, 1020.0, leave_code=3)
        assert apply_callback_exit(t, 1021.0, leave_code=3) is None
