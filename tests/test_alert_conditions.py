"""Alert conditions, tested as pure functions: when each task and account alert holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.conditions import (
    ERROR,
    EXITED,
    IDLE,
    NOT_FOUND,
    STALE,
    STALE_NEW,
    AccountHealth,
    StaleRule,
    Thresholds,
    auth_firing,
    error_firing,
    exit_firing,
    idle_firing,
    leave_code,
    not_found_firing,
    observe_outcome,
    over_budget_firing,
    stale_firing,
    task_alerts,
    throttled_firing,
)
from monitor.alerts.kinds import (
    NO_TASK_ALERT,
    TASK_EXITED,
    TaskKind,
)
from monitor.alerts.rules import task_fingerprint
from monitor.alerts.settings import thresholds_of
from monitor.alerts.task_rules import error_annotations, stale_annotations
from monitor.alerts.texts import over_budget_annotations
from monitor.config import AlertsConfig
from monitor.models import Outcome, Status, Task
from monitor.status_rules import apply_callback_exit, apply_poll, apply_removal
from monitor.trtc.client import CallResult
from tests.support import T0, make_task

EXPECTED = frozenset({0, 1, 2})


def interval_15(task: Task) -> float:
    return 15.0


def bits(task: Task, now: float, th: Thresholds | None = None, floor: float = 0.0) -> TaskKind:
    return task_alerts(task, now, th or Thresholds(), interval_15, floor)


def ok(status: str, request_id: str = "req-ok") -> CallResult:
    return CallResult(
        Outcome.OK, "", request_id=request_id, response={"Status": status, "RequestId": request_id}
    )


class TestExitCondition:
    @pytest.mark.parametrize("status", [Status.EXITED, Status.ENDED, Status.EXPIRED])
    def test_a_stop_without_a_leave_code_fires(self, status: Status) -> None:
        assert exit_firing(make_task(status=status), EXPECTED)
        assert bits(make_task(status=status), T0) & EXITED

    @pytest.mark.parametrize(
        "status", [Status.PENDING, Status.IDLE, Status.IN_PROGRESS, Status.REMOVED]
    )
    def test_live_and_removed_tasks_do_not_fire(self, status: Status) -> None:
        assert not exit_firing(make_task(status=status), EXPECTED)
        assert not bits(make_task(status=status), T0) & EXITED

    @pytest.mark.parametrize("code", sorted(EXPECTED))
    def test_an_expected_leave_code_means_no_alert(self, code: int) -> None:
        for status in (Status.EXITED, Status.ENDED, Status.EXPIRED):
            assert not exit_firing(make_task(status=status, extra={"leave_code": code}), EXPECTED)

    @pytest.mark.parametrize("code", [3, 4, 99, 100, 101])
    def test_an_unexpected_leave_code_fires(self, code: int) -> None:
        assert exit_firing(make_task(status=Status.EXITED, extra={"leave_code": code}), EXPECTED)

    def test_expected_codes_come_from_the_configuration(self) -> None:
        config = AlertsConfig.model_validate({"exit": {"expected_leave_codes": [0, 99]}})
        th = thresholds_of(config)
        assert not bits(make_task(status=Status.EXITED, extra={"leave_code": 99}), T0, th) & EXITED
        assert bits(make_task(status=Status.EXITED, extra={"leave_code": 1}), T0, th) & EXITED

    def test_a_leave_code_written_as_text_is_understood(self) -> None:
        assert leave_code(make_task(extra={"leave_code": "2"})) == 2
        assert leave_code(make_task(extra={"leave_code": True})) is None
        assert leave_code(make_task(extra={"leave_code": "soon"})) is None
        assert not exit_firing(make_task(status=Status.ENDED, extra={"leave_code": "1"}), EXPECTED)

    def test_other_callback_facts_do_not_hide_an_exit(self) -> None:
        assert exit_firing(make_task(status=Status.EXITED, extra={"vod_file_id": "x"}), EXPECTED)

    def test_deregistering_first_never_alerts_and_removing_resolves(self) -> None:
        t = make_task(status=Status.IN_PROGRESS)
        apply_removal(t, T0 + 1)
        assert not bits(t, T0 + 2) & EXITED
        stopped = make_task(status=Status.EXITED)
        assert bits(stopped, T0) & EXITED
        apply_removal(stopped, T0 + 5)
        assert not bits(stopped, T0 + 6) & EXITED

    def test_exited_then_ended_is_one_alert(self) -> None:
        t = make_task(status=Status.IN_PROGRESS)
        apply_poll(t, ok("Exited"), T0 + 10)
        fp_exited = task_fingerprint(TASK_EXITED, t.key)
        assert bits(t, T0 + 10) & EXITED
        apply_poll(t, CallResult(Outcome.ENDED, "ResourceNotFound", request_id="r"), T0 + 20)
        assert t.status is Status.ENDED
        assert bits(t, T0 + 20) & EXITED
        assert task_fingerprint(TASK_EXITED, t.key) == fp_exited

    def test_a_callback_with_an_expected_code_prevents_the_alert(self) -> None:
        t = make_task(status=Status.IN_PROGRESS)
        apply_callback_exit(t, T0 + 1, leave_code=0)
        t.extra["leave_code"] = 0  # what the daemon keeps from the 302 callback
        assert t.status is Status.EXITED
        assert not bits(t, T0 + 1) & EXITED

    def test_disabled_exit_alert_never_fires(self) -> None:
        th = Thresholds(exit_enabled=False)
        assert not bits(make_task(status=Status.ENDED), T0, th) & EXITED


class TestErrorCondition:
    def test_fires_at_the_configured_number_of_failed_polls(self) -> None:
        t = make_task(consecutive_errors=2)
        assert not error_firing(t, 3)
        t.consecutive_errors = 3
        assert error_firing(t, 3)
        assert bits(t, T0) & ERROR

    def test_throttled_answers_never_count(self) -> None:
        t = make_task()
        for _ in range(10):
            apply_poll(t, CallResult(Outcome.THROTTLED, "RequestLimitExceeded"), T0 + 1)
        assert not bits(t, T0 + 1) & ERROR

    def test_failed_polls_fire_and_a_success_resolves(self) -> None:
        t = make_task()
        for i in range(3):
            apply_poll(t, CallResult(Outcome.TRANSIENT, "InternalError", request_id=f"r{i}"), T0)
        assert bits(t, T0) & ERROR
        apply_poll(t, ok("InProgress"), T0 + 1)
        assert not bits(t, T0 + 1) & ERROR

    @pytest.mark.parametrize("status", [Status.ENDED, Status.EXPIRED, Status.REMOVED])
    def test_tasks_no_longer_polled_do_not_fire(self, status: Status) -> None:
        assert not error_firing(make_task(status=status, consecutive_errors=9), 3)

    def test_annotations_name_the_last_error_code_and_request_id(self) -> None:
        t = make_task(consecutive_errors=4, last_error_code="InternalError", last_request_id="q-7")
        text = error_annotations(t, 3)["description"]
        assert "InternalError" in text
        assert "q-7" in text
        assert "4 polls" in text


class TestStaleCondition:
    def test_a_multiple_of_the_interval_is_measured_from_the_last_success(self) -> None:
        t = make_task(last_success_at=T0)
        assert not bits(t, T0 + 45) & STALE  # exactly 3 x 15 s is not yet longer
        assert bits(t, T0 + 45.5) & STALE

    def test_the_threshold_follows_each_tasks_interval(self) -> None:
        t = make_task(last_success_at=T0)
        th = Thresholds()
        assert not task_alerts(t, T0 + 50, th, lambda _: 60.0) & STALE
        assert task_alerts(t, T0 + 50, th, lambda _: 10.0) & STALE

    def test_a_fixed_duration_ignores_the_interval(self) -> None:
        th = Thresholds(stale_after=StaleRule(duration=20.0))

        def never(task: Task) -> float:
            raise AssertionError("the interval is not needed")

        assert task_alerts(make_task(), T0 + 21, th, never) & STALE

    def test_a_task_never_observed_counts_from_its_registration(self) -> None:
        t = make_task(status=Status.PENDING, last_success_at=None, registered_at=T0)
        assert not stale_firing(t, T0 + 30, 45.0)
        assert stale_firing(t, T0 + 46, 45.0)

    @pytest.mark.parametrize("status", [Status.ENDED, Status.EXPIRED, Status.REMOVED])
    def test_tasks_no_longer_polled_never_go_stale(self, status: Status) -> None:
        assert not bits(make_task(status=status, last_success_at=T0 - 10_000), T0) & STALE

    def test_an_exited_task_is_still_watched(self) -> None:
        assert bits(make_task(status=Status.EXITED, last_success_at=T0), T0 + 100) & STALE

    def test_the_monitors_own_downtime_does_not_start_new_alerts(self) -> None:
        t = make_task(last_success_at=T0)
        started = T0 + 600  # the monitor came back ten minutes later
        b = bits(t, started + 10, floor=started)
        assert b & STALE  # an alert already firing stays firing
        assert not b & STALE_NEW  # but no new one yet
        assert bits(t, started + 46, floor=started) & STALE_NEW

    def test_annotations_give_the_age_and_the_threshold(self) -> None:
        t = make_task(last_success_at=T0)
        text = stale_annotations(t, T0 + 90, 45.0)["description"]
        assert "1m30s" in text
        assert "45s" in text


class TestIdleCondition:
    def test_idle_longer_than_the_limit_fires(self) -> None:
        t = make_task(status=Status.IDLE, status_since=T0, last_success_at=T0 + 299)
        assert not idle_firing(t, T0 + 300, 300.0)
        assert idle_firing(t, T0 + 301, 300.0)
        assert bits(t, T0 + 301) & IDLE

    def test_leaving_idle_resolves(self) -> None:
        t = make_task(status=Status.IDLE, status_since=T0, last_success_at=T0 + 400)
        assert bits(t, T0 + 401) & IDLE
        apply_poll(t, ok("InProgress"), T0 + 402)
        assert not bits(t, T0 + 403) & IDLE

    def test_other_statuses_never_count_as_idle(self) -> None:
        assert not idle_firing(
            make_task(status=Status.IN_PROGRESS, status_since=T0), T0 + 9999, 300.0
        )


class TestCombinedConditions:
    @settings(max_examples=300, deadline=None)
    @given(
        status=st.sampled_from(list(Status)),
        errors=st.integers(0, 6),
        last_success=st.one_of(st.none(), st.floats(T0 - 1000, T0 + 1000)),
        since=st.floats(T0 - 1000, T0 + 1000),
        leave=st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 99, "2", "x"])),
        floor=st.floats(0, T0 + 1000),
        interval=st.floats(1, 100),
        stale_duration=st.one_of(st.none(), st.floats(1, 500)),
        enabled=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
        seen=st.booleans(),
    )
    def test_the_sweeps_one_call_agrees_with_each_condition(
        self,
        status: Status,
        errors: int,
        last_success: float | None,
        since: float,
        leave: object,
        floor: float,
        interval: float,
        stale_duration: float | None,
        enabled: tuple[bool, bool, bool, bool],
        seen: bool,
    ) -> None:
        t = make_task(
            status=status,
            consecutive_errors=errors,
            last_success_at=last_success,
            status_since=since,
            extra={} if leave is None else {"leave_code": leave},
            answer_status=Status.IN_PROGRESS if seen else None,
        )
        after = (
            StaleRule(duration=stale_duration)
            if stale_duration is not None
            else StaleRule(multiple=3.0, duration=None)
        )
        th = Thresholds(
            exit_enabled=enabled[0],
            error_enabled=enabled[1],
            stale_enabled=enabled[2],
            stale_after=after,
            idle_enabled=enabled[3],
        )
        now = T0 + 500
        threshold = after.seconds(interval)
        stopped = enabled[0] and exit_firing(t, th.expected_leave_codes)
        expected = (
            (EXITED if stopped and not not_found_firing(t) else NO_TASK_ALERT)
            | (NOT_FOUND if stopped and not_found_firing(t) else NO_TASK_ALERT)
            | (ERROR if enabled[1] and error_firing(t, th.consecutive) else NO_TASK_ALERT)
            | (STALE if enabled[2] and stale_firing(t, now, threshold) else NO_TASK_ALERT)
            | (
                STALE_NEW
                if enabled[2] and stale_firing(t, now, threshold, floor)
                else NO_TASK_ALERT
            )
            | (IDLE if enabled[3] and idle_firing(t, now, th.idle_after) else NO_TASK_ALERT)
        )
        assert task_alerts(t, now, th, lambda _: interval, floor) == expected


class TestAccountConditions:
    def test_nothing_is_known_before_any_call(self) -> None:
        h = AccountHealth()
        assert auth_firing(h) is None
        assert throttled_firing(h, T0) is None
        assert over_budget_firing(h) is None

    def test_rejected_credentials_fire_until_a_call_succeeds(self) -> None:
        h = AccountHealth()
        observe_outcome(h, Outcome.AUTH, T0, "AuthFailure.SignatureFailure")
        assert auth_firing(h) is True
        assert h.auth_code == "AuthFailure.SignatureFailure"
        for outcome in (Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.INVALID):
            observe_outcome(h, outcome, T0 + 1)
            assert auth_firing(h) is True
        observe_outcome(h, Outcome.OK, T0 + 2)
        assert auth_firing(h) is False

    def test_an_ended_answer_also_proves_the_credentials(self) -> None:
        h = AccountHealth()
        observe_outcome(h, Outcome.AUTH, T0)
        observe_outcome(h, Outcome.ENDED, T0 + 1)
        assert auth_firing(h) is False

    def test_throttling_fires_for_five_minutes_after_the_last_throttle(self) -> None:
        h = AccountHealth()
        observe_outcome(h, Outcome.THROTTLED, T0)
        assert throttled_firing(h, T0 + 299) is True
        observe_outcome(h, Outcome.THROTTLED, T0 + 200)
        assert throttled_firing(h, T0 + 499) is True
        assert throttled_firing(h, T0 + 500) is False

    def test_a_late_report_does_not_move_the_last_throttle_back(self) -> None:
        h = AccountHealth()
        observe_outcome(h, Outcome.THROTTLED, T0 + 100)
        observe_outcome(h, Outcome.THROTTLED, T0)
        assert h.last_throttled_at == T0 + 100

    def test_over_budget_when_the_required_rate_exceeds_the_budget(self) -> None:
        h = AccountHealth(required_rate=20.0, budget_rate=20.0)
        assert over_budget_firing(h) is False
        h.required_rate = 133.4
        assert over_budget_firing(h) is True
        text = over_budget_annotations("default", h)["summary"]
        assert "133.4" in text
        assert "20.0" in text
