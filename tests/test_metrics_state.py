"""The state series and the exposition of one ``MonitorMetrics``, without a daemon: per-task
and fleet series, the replica figures, the instruments and what a scrape holds."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import BucketGauge, MonitorMetrics, StateView
from monitor.models import Status
from tests.metrics_support import (
    APP,
    OPENMETRICS,
    TASK_FAMILIES,
    by_task,
    families,
    make_task,
    openmetrics_families,
    render,
    samples,
)


class TestTaskSeries:
    def test_every_task_has_all_seven_statuses_with_exactly_one_set(self) -> None:
        tasks = [make_task(f"t-{s.value}", s) for s in Status]
        text, _ = render(StateView(tasks=tasks))
        grouped = by_task(samples(text, "trtc_recording_task_status"))
        assert set(grouped) == {t.task_id for t in tasks}
        for task in tasks:
            series = {s.labels["status"]: s.value for s in grouped[task.task_id]}
            assert series == {s.value: float(s is task.status) for s in Status}
            for sample in grouped[task.task_id]:
                assert sample.labels["account"] == "default"
                assert sample.labels["region"] == "ap-guangzhou"
                assert sample.labels["sdk_app_id"] == str(APP)

    def test_info_series_carry_the_labels_named_in_metrics_labels_and_no_others(self) -> None:
        tasks = [
            make_task("a", labels={"room": "r-1", "customer": "acme", "private": "x"}),
            make_task("b", labels={"customer": "zeta"}),
        ]
        text, _ = render(StateView(tasks=tasks, info_labels=["room", "customer", "room"]))
        info = by_task(samples(text, "trtc_recording_task_info"))
        assert len(info["a"]) == len(info["b"]) == 1
        assert info["a"][0].value == 1.0
        assert info["a"][0].labels == {
            "account": "default",
            "region": "ap-guangzhou",
            "sdk_app_id": str(APP),
            "task_id": "a",
            "kind": "cloud",
            "recorder_key": "",  # none registered: empty, which Prometheus treats as absent
            "room": "r-1",
            "customer": "acme",
        }
        # A missing label is empty, which Prometheus treats as absent.
        assert info["b"][0].labels["room"] == ""
        assert info["b"][0].labels["customer"] == "zeta"
        assert text.count('customer="acme"') == 1  # user labels only on the info series

    def test_label_values_with_quotes_backslashes_and_newlines_survive(self) -> None:
        odd = 'a "quoted" \\ back\nslash'
        text, _ = render(
            StateView(tasks=[make_task("odd", labels={"room": odd})], info_labels=["room"])
        )
        (info,) = samples(text, "trtc_recording_task_info")
        assert info.labels["room"] == odd

    def test_health_series_follow_the_task_and_unknowns_are_absent(self) -> None:
        known = make_task("known", last_success_at=1_700_000_100.0, storage_files=3)
        known.consecutive_errors = 2
        fresh = make_task("fresh", Status.PENDING)
        text, _ = render(StateView(tasks=[known, fresh]))
        value = {
            name: {s.labels["task_id"]: s.value for s in samples(text, name)}
            for name in TASK_FAMILIES[2:]
        }
        assert value["trtc_recording_task_status_since_timestamp_seconds"] == {
            "known": 1_700_000_000.0,
            "fresh": 1_700_000_000.0,
        }
        assert value["trtc_recording_task_last_success_timestamp_seconds"] == {
            "known": 1_700_000_100.0
        }
        assert value["trtc_recording_task_consecutive_errors"] == {"known": 2.0, "fresh": 0.0}
        assert value["trtc_recording_task_storage_files"] == {"known": 3.0}

    def test_without_per_task_series_the_fleet_series_remain(self) -> None:
        tasks = [make_task("a"), make_task("b", Status.IDLE, region="ap-mumbai")]
        view = StateView(tasks=tasks, per_task=False, info_labels=["room"])
        text, _ = render(view)
        found = families(text)
        assert not any(name in found for name in TASK_FAMILIES)
        assert "task_id" not in text
        counts = {
            (s.labels["region"], s.labels["status"]): s.value
            for s in samples(text, "trtc_recording_tasks")
        }
        assert counts[("ap-guangzhou", "InProgress")] == 1.0
        assert counts[("ap-mumbai", "Idle")] == 1.0
        with_tasks, _ = render(StateView(tasks=tasks))
        assert all(name in families(with_tasks) for name in TASK_FAMILIES)


class TestFleetSeries:
    def test_task_counts_cover_every_status_of_every_account_and_region_in_use(self) -> None:
        tasks = [
            make_task("a", Status.IDLE),
            make_task("b", Status.IDLE),
            make_task("c", Status.EXITED, region="ap-singapore", account="other"),
        ]
        text, _ = render(StateView(tasks=tasks))
        counts = {
            (s.labels["account"], s.labels["region"], s.labels["status"]): s.value
            for s in samples(text, "trtc_recording_tasks")
        }
        expected = {
            (account, region, s.value): 0.0
            for account, region in (("default", "ap-guangzhou"), ("other", "ap-singapore"))
            for s in Status
        }
        expected[("default", "ap-guangzhou", "Idle")] = 2.0
        expected[("other", "ap-singapore", "Exited")] = 1.0
        assert counts == expected

    def test_limiter_and_budget_gauges_come_from_the_view(self) -> None:
        view = StateView(
            buckets=[BucketGauge("default", "trtc.tencentcloudapi.com", 20.0, 17.5)],
            required_rate={"default": 133.3, "spare": 0.0},
        )
        text, _ = render(view)
        (limit,) = samples(text, "trtc_monitor_ratelimit_limit")
        (effective,) = samples(text, "trtc_monitor_ratelimit_effective_rate")
        assert limit.labels == {
            "account": "default",
            "endpoint": "trtc.tencentcloudapi.com",
            "action": "DescribeCloudRecording",  # each action has its own budget
        }
        assert (limit.value, effective.value) == (20.0, 17.5)
        required = {
            s.labels["account"]: s.value for s in samples(text, "trtc_monitor_poll_required_rate")
        }
        assert required == {"default": 133.3, "spare": 0.0}


class TestReplicaSeries:
    @pytest.mark.parametrize("reference", [False, True])
    def test_a_replica_exports_its_own_tasks_and_only_the_leader_the_fleet(
        self, reference: bool
    ) -> None:
        tasks = [make_task("a", Status.IDLE), make_task("b", Status.IDLE)]
        metrics = MonitorMetrics()
        draw = metrics.render_reference if reference else metrics.render
        follower_text = draw(StateView(tasks=tasks[:1], fleet=tasks, export_fleet=False), None)[0]
        leader_text = draw(StateView(tasks=tasks[1:], fleet=tasks, export_fleet=True), None)[0]
        follower, leader = follower_text.decode(), leader_text.decode()
        assert {s.labels["task_id"] for s in samples(follower, "trtc_recording_task_info")} == {"a"}
        assert {s.labels["task_id"] for s in samples(leader, "trtc_recording_task_info")} == {"b"}
        assert samples(follower, "trtc_recording_tasks") == []
        idle = [
            s.value for s in samples(leader, "trtc_recording_tasks") if s.labels["status"] == "Idle"
        ]
        assert idle == [2.0]  # the whole fleet, counted once

    def test_cluster_gauges_name_every_account_and_forget_removed_ones(self) -> None:
        metrics = MonitorMetrics()
        metrics.set_cluster(3, {"default": 5}, ["default", "spare", "gone"])
        metrics.set_cluster(2, {"default": 7}, ["default", "spare"])
        text, _ = render_with(metrics, StateView())
        (replicas,) = samples(text, "trtc_monitor_cluster_replicas")
        assert replicas.value == 2.0
        owned = {s.labels["account"]: s.value for s in samples(text, "trtc_monitor_owned_tasks")}
        assert owned == {"default": 7.0, "spare": 0.0}


def render_with(metrics: MonitorMetrics, view: StateView) -> tuple[str, str]:
    body, content_type = metrics.render(view, None)
    return body.decode(), content_type


class TestExposition:
    def test_no_sample_carries_a_timestamp_in_either_format(self) -> None:
        metrics = MonitorMetrics()
        metrics.transitions.labels("default", "ap-guangzhou", "Idle", "InProgress").inc()
        metrics.api_duration.labels("default").observe(0.2)
        view = StateView(tasks=[make_task("a", last_success_at=1_700_000_100.0)])
        text = metrics.render(view, None)[0].decode()
        parsed = list(text_string_to_metric_families(text))
        assert parsed
        assert all(s.timestamp is None for f in parsed for s in f.samples)
        # The text format puts a timestamp as a third field on the sample line.
        for line in text.splitlines():
            if line and not line.startswith("#"):
                assert len(line.rsplit("} ", 1)[-1].split()) <= 2, line
        om = metrics.render(view, OPENMETRICS)[0].decode()
        assert all(s.timestamp is None for f in openmetrics_families(om) for s in f.samples)

    def test_openmetrics_is_served_when_asked_for_via_accept(self) -> None:
        view = StateView(tasks=[make_task("a")])
        text, plain_type = render(view, None)
        assert plain_type.startswith("text/plain; version=0.0.4")
        assert "# EOF" not in text
        om, om_type = render(view, f"{OPENMETRICS}; q=0.9, text/plain; q=0.5")
        assert om_type.startswith("application/openmetrics-text")
        assert om.endswith("# EOF\n")
        names = {f.name for f in openmetrics_families(om)}
        assert {"trtc_recording_task_status", "trtc_monitor_build_info"} <= names

    def test_instrumentation_exposes_the_contract_series_without_created_samples(self) -> None:
        metrics = MonitorMetrics()
        metrics.transitions.labels("default", "ap-guangzhou", "Idle", "InProgress").inc()
        metrics.api_requests.labels("default", "ap-guangzhou", "ok", "").inc()
        metrics.api_duration.labels("default").observe(0.2)
        metrics.notifications.labels("am", "ok").inc()
        for accept in (None, OPENMETRICS):
            text = metrics.render(StateView(), accept)[0].decode()
            assert "_created" not in text
        text = metrics.render(StateView(), None)[0].decode()
        (transitions,) = samples(text, "trtc_recording_transitions_total")
        assert transitions.value == 1.0
        assert samples(text, "trtc_monitor_api_request_duration_seconds_count")[0].value == 1.0
        (build,) = samples(text, "trtc_monitor_build_info")
        assert build.value == 1.0
        assert set(build.labels) == {"version", "python_version"}

    def test_the_configuration_load_counts_as_the_last_successful_reload(self) -> None:
        before = time.time()
        text = MonitorMetrics().render(StateView(), None)[0].decode()
        (ok,) = samples(text, "trtc_monitor_config_last_reload_successful")
        (at,) = samples(text, "trtc_monitor_config_last_reload_success_timestamp_seconds")
        assert ok.value == 1.0
        assert before <= at.value <= time.time()
