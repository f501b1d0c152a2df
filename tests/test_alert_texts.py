"""What the alerts say, tested as pure functions."""

from __future__ import annotations

import pytest

from monitor.alerts.task_rules import exit_annotations
from monitor.alerts.texts import LEAVE_CODES
from monitor.models import Source, Status, Transition
from tests.support import T0, make_task

EXPECTED = frozenset({0, 1, 2})


class TestExitDescription:
    def test_it_names_statuses_leave_code_meaning_and_request_id(self) -> None:
        t = make_task(status=Status.EXITED, extra={"leave_code": 3})
        transition = Transition(
            t.sdk_app_id, t.task_id, Status.IN_PROGRESS, Status.EXITED, T0, Source.CALLBACK,
            request_id="req-302", detail={"leave_code": 3},
        )  # fmt: skip
        text = exit_annotations(t, transition, EXPECTED)["description"]
        assert "from InProgress to Exited" in text
        assert "leave code 3 (bot kicked by the server)" in text
        assert "req-302" in text
        assert "callback" in text

    def test_an_ended_code_and_a_poll_request_id_are_named(self) -> None:
        t = make_task(status=Status.ENDED)
        transition = Transition(
            t.sdk_app_id, t.task_id, Status.EXITED, Status.ENDED, T0, Source.POLL,
            request_id="req-e", detail={"code": "FailedOperation.TaskNotExist"},
        )  # fmt: skip
        text = exit_annotations(t, transition, EXPECTED)["description"]
        assert "from Exited to Ended" in text
        assert "FailedOperation.TaskNotExist" in text
        assert "req-e" in text

    def test_without_the_transition_it_still_says_what_is_known(self) -> None:
        t = make_task(status=Status.EXPIRED, status_since=T0, last_request_id="req-last")
        annotations = exit_annotations(t, None, EXPECTED)
        assert "Expired" in annotations["summary"]
        assert "is Expired since 2023-11-14T22:13:20Z" in annotations["description"]
        assert "req-last" in annotations["description"]

    @pytest.mark.parametrize("code", sorted(LEAVE_CODES))
    def test_every_documented_leave_code_is_explained(self, code: int) -> None:
        t = make_task(status=Status.EXITED, extra={"leave_code": code})
        text = exit_annotations(t, None, frozenset())["description"]
        assert f"leave code {code} ({LEAVE_CODES[code]})" in text
