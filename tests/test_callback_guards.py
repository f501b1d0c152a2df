"""The pure parts of the callback guards and the read guards: time bounds, delivery claims,
the ``callbacks.apps``/``max_skew`` configuration, time decoding, and a sweep that survives a
task the rules cannot read."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.alerts import AlertEngine, RetryPolicy
from monitor.callbacks.dedupe import Claim, DeliveryCache, dedupe_window
from monitor.callbacks.parse import parse_callback
from monitor.callbacks.timing import Verdict, check_times
from monitor.config import (
    ConfigError,
    ResolvedSecrets,
    callback_app_keys,
    parse_config,
    resolve_secrets,
)
from monitor.metrics import MonitorMetrics
from monitor.models import MAX_WALL_TIME, Status, Task, wall_time
from monitor.secrets import Secret
from monitor.store import SqliteStore
from monitor.store.codec.checks import checked_task
from monitor.uploads import UploadFailure, UploadState
from tests.alerts.engine_support import am_config
from tests.callbacks_support import body
from tests.support import T0, ManualClock, make_task

NOW = 1_800_000_000.0


def event(**times: Any) -> Any:
    import json

    data = json.loads(body(302, "t-1", {"LeaveCode": 0}, at=NOW))
    for name, value in times.items():
        (data if name == "CallbackTs" else data["EventInfo"])[name] = value
    return parse_callback(json.dumps(data).encode(), "1400000001")


class TestTimeBounds:
    def test_times_inside_the_window_pass(self) -> None:
        assert check_times(event(), NOW, 600, 300) is None
        assert check_times(event(CallbackTs=int((NOW + 299) * 1000)), NOW, 600, 300) is None

    @pytest.mark.parametrize(
        "times",
        [
            {"CallbackTs": 9999999999999},
            {"EventMsTs": 9223372036854775807},
            {"EventTs": 99999999999},
            {"EventTs": str(int(NOW + 301))},
        ],
    )
    def test_a_time_beyond_the_skew_is_in_the_future(self, times: dict[str, Any]) -> None:
        problem = check_times(event(**times), NOW, 600, 300)
        assert problem is not None
        assert problem.verdict is Verdict.FUTURE
        assert problem.field.rsplit(".", 1)[-1] == next(iter(times))

    @pytest.mark.parametrize(
        "times",
        [{"CallbackTs": int((NOW - 601) * 1000)}, {"EventTs": 0}, {"EventMsTs": 1}],
    )
    def test_a_time_before_max_age_is_stale(self, times: dict[str, Any]) -> None:
        problem = check_times(event(**times), NOW, 600, 300)
        assert problem is not None
        assert problem.verdict is Verdict.STALE


class TestDeliveryClaims:
    def test_the_same_key_is_a_duplicate_for_its_app_and_a_mismatch_for_another(self) -> None:
        now = [0.0]
        cache = DeliveryCache(ttl=dedupe_window(600, 300), clock=lambda: now[0])
        assert cache.claim_for(b"k", 1) is Claim.NEW
        now[0] = 899.0  # inside max_age + max_skew
        assert cache.claim_for(b"k", 1) is Claim.DUPLICATE
        assert cache.claim_for(b"k", 2) is Claim.MISMATCH

    def test_the_window_is_never_shorter_than_what_the_door_accepts(self) -> None:
        assert dedupe_window(600, 300) > 900
        assert dedupe_window(3600, 0) > 3600
        assert dedupe_window(10, 1) >= 300


def config_text(callbacks: str) -> str:
    return f"""
accounts:
  default: {{secret_id_env: X_ID, secret_key_env: X_KEY}}
callbacks:
{callbacks}
"""


class TestConfig:
    def test_max_skew_is_a_duration_with_a_default_of_five_minutes(self) -> None:
        assert parse_config(config_text("  key_env: K")).callbacks.max_skew == 300.0
        conf = parse_config(config_text("  key_env: K\n  max_skew: 30s"))
        assert conf.callbacks.max_skew == 30.0
        with pytest.raises(ConfigError):
            parse_config(config_text("  key_env: K\n  max_skew: soon"))

    def test_apps_have_their_own_keys_and_fall_back_on_the_single_one(self) -> None:
        conf = parse_config(
            config_text("  key_env: K\n  apps:\n    1400000001: {}\n    1400000002: {key_env: K2}")
        )
        assert conf.callbacks.enabled
        secrets = resolve_secrets(
            conf, {"X_ID": "id", "X_KEY": "secretkey", "K": "single", "K2": "second"}
        )
        assert callback_app_keys(conf.callbacks, secrets) == {
            1400000001: "single",
            1400000002: "second",
        }
        assert "second" in secrets.secret_values()
        assert "second" not in conf.summary()
        assert "1400000002" in conf.summary()

    def test_without_apps_there_is_no_per_application_check(self) -> None:
        conf = parse_config(config_text("  key_env: K"))
        assert callback_app_keys(conf.callbacks, ResolvedSecrets(callback_key=Secret("k"))) is None

    @pytest.mark.parametrize(
        "callbacks",
        [
            "  apps:\n    1400000001: {}",  # no key anywhere
            "  key_env: K\n  apps:\n    abc: {key_env: K2}",
            "  key_env: K\n  apps:\n    0: {key_env: K2}",
            "  key_env: K\n  apps:\n    1400000001: {key_env: K2, key: literal-value}",
        ],
    )
    def test_bad_apps_are_refused(self, callbacks: str) -> None:
        with pytest.raises(ConfigError):
            parse_config(config_text(callbacks))

    def test_apps_alone_turn_callbacks_on(self) -> None:
        conf = parse_config(config_text("  apps:\n    1400000001: {key_env: K1}"))
        assert conf.callbacks.enabled
        assert conf.callbacks.key_source() is None


class TestTimeDecoding:
    @pytest.mark.parametrize(
        "value", [9.2e18, 1e300, math.inf, math.nan, -1.0, "1700000000", None, True]
    )
    def test_what_cannot_be_a_date_is_no_time(self, value: Any) -> None:
        assert wall_time(value) is None

    def test_dates_are_times(self) -> None:
        assert wall_time(1_700_000_000) == 1_700_000_000.0
        assert wall_time(MAX_WALL_TIME) == MAX_WALL_TIME

    def test_a_task_with_impossible_times_is_repaired_and_logged_once(self) -> None:
        upload = UploadState(started_at=9e18, failures=(UploadFailure(9e18, 308),))

        def bad() -> Task:
            return Task(
                1400000001,
                "t-bad",
                "ap-guangzhou",
                "default",
                registered_at=9e18,
                status_since=math.inf,
                last_error_at=1e300,
                ended_at=-5.0,
                upload=upload,
            )

        with capture_logs() as logs:
            task = checked_task(bad(), "test")
            checked_task(bad(), "test")
        assert (task.registered_at, task.status_since) == (0.0, 0.0)
        assert (task.last_error_at, task.ended_at) == (None, None)
        assert task.upload.started_at is None
        assert [f.at for f in task.upload.failures] == [0.0]
        fields = [e["field"] for e in logs if e["event"] == "store_record_unreadable"]
        assert sorted(fields) == sorted(set(fields))  # each once
        assert {"registered_at", "status_since", "last_error_at", "ended_at"} <= set(fields)

    def test_a_good_task_is_returned_as_it_is(self) -> None:
        task = Task(1, "t", "ap-guangzhou", "default", registered_at=T0, status_since=T0)
        assert checked_task(task, "test") is task


class TestSweep:
    async def test_a_task_the_rules_cannot_read_does_not_stop_the_others(
        self, tmp_path: Path
    ) -> None:
        clock = ManualClock(T0 + 3600)
        async with SqliteStore(tmp_path / "m.db") as store:
            engine = AlertEngine(
                am_config("http://127.0.0.1:9"),
                store,
                MonitorMetrics(),
                interval_of=lambda task: 15.0,
                clock=clock,
                retry=RetryPolicy(attempts=1, base=0.01),
                redeliver_after=30.0,
            )
            await engine.start()
            try:
                broken = make_task("t-broken", Status.IN_PROGRESS)
                broken = dataclasses.replace(broken, last_success_at="garbage")  # type: ignore[arg-type]
                stale = make_task("t-stale", Status.IN_PROGRESS, last_success_at=T0)
                clock.now += 120.0  # stale counts from the engine's start at the earliest
                with capture_logs() as logs:
                    await engine.sweep([broken, stale])
                    await engine.sweep([broken, stale])
                names = {(r.alertname, r.task.task_id) for r in engine.firing() if r.task}
                assert ("RecordingTaskStale", "t-stale") in names
                failed = [e for e in logs if e["event"] == "alert_sweep_task_failed"]
                assert len(failed) == 1
            finally:
                await engine.stop()
