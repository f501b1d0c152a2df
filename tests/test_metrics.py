"""Metrics (SPEC section 10b): the state collector, the exposition, and real consumers of it."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import time
import urllib.parse
from collections import defaultdict
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from monitor.exposition import Rendered
from monitor.http.server import accepts_gzip
from monitor.metrics import (
    BucketGauge,
    MonitorMetrics,
    StateView,
    Syntax,
    reference_families,
    syntax_of,
    task_series_text,
)
from monitor.models import REGIONS, Status, Task, TaskKey
from monitor.simulator import DEFAULT_SECRET_KEY, Life, Simulator
from monitor.uploads import NO_UPLOAD, UploadEvent, apply_upload_event
from tests.conftest import API_TOKEN, DaemonFactory, RunningDaemon
from tests.support import Proc, prometheus, promql, require_binary, wait_for, wait_for_async

APP = 1400000001
TASK_FAMILIES = (
    "trtc_recording_task_status",
    "trtc_recording_task_info",
    "trtc_recording_task_status_since_timestamp_seconds",
    "trtc_recording_task_last_success_timestamp_seconds",
    "trtc_recording_task_consecutive_errors",
    "trtc_recording_task_storage_files",
)
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def make_task(task_id: str, status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    fields.setdefault("region", "ap-guangzhou")
    fields.setdefault("account", "default")
    return Task(
        sdk_app_id=APP,
        task_id=task_id,
        status=status,
        status_since=1_700_000_000.0,
        registered_at=1_700_000_000.0,
        **fields,
    )


def render(view: StateView, accept: str | None = None) -> tuple[str, str]:
    body, content_type = MonitorMetrics().render(view, accept)
    return body.decode(), content_type


def openmetrics_families(text: str) -> list[Metric]:
    parsed: list[Metric] = list(
        openmetrics_parser.text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    )
    return parsed


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[Sample]:
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def by_task(found: list[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in found:
        grouped[sample.labels["task_id"]].append(sample)
    return grouped


async def scrape(running: RunningDaemon, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    async with running.session.get(f"{running.url}/metrics", headers=headers) as response:
        assert response.status == 200
        return await response.text()


async def register(running: RunningDaemon, task_id: str, **fields: Any) -> None:
    response = await running.register(APP, task_id, **fields)
    async with response:
        assert response.status == 201, await response.text()


async def wait_status(running: RunningDaemon, task_id: str, status: Status) -> None:
    async def reached() -> bool:
        task = running.daemon.registry.get(TaskKey(APP, task_id))
        return task is not None and task.status is status

    await wait_for_async(reached, timeout=10, what=f"{task_id} to be {status}")


# ---------------------------------------------------------------------------------------------
# the collector, on its own


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
        assert limit.labels == {"account": "default", "endpoint": "trtc.tencentcloudapi.com"}
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


# ---------------------------------------------------------------------------------------------
# the fast text against prometheus_client's own encoders

# Label values a user, a callback body or a scenario file could put there.
HOSTILE = st.one_of(
    st.text(max_size=12),
    st.text(alphabet='\\"\n{}=,# \tü€😀\x00\r', max_size=8),
    st.sampled_from(["", "\\", '"', "\n", '\\"', "\\n", "a\\", "ü"]),
)
FINITE = st.floats(allow_nan=False, min_value=-1e18, max_value=1e18) | st.sampled_from(
    [0.0, 1.0, 1e6, 1_700_000_000.0, 1_700_000_000.123, float("inf")]
)
COUNTS = st.integers(min_value=0, max_value=2_000_000)
# One upload state of each kind: none, uploading, done, failed.
UPLOADS = st.sampled_from(
    [
        NO_UPLOAD,
        *(
            apply_upload_event(NO_UPLOAD, UploadEvent(event, status), 1.0).state
            for event, status in ((304, 0), (305, 0), (308, None))
        ),
    ]
)
INFO_NAMES = st.lists(st.sampled_from(["room", "customer", "a", "zz", "task_idx"]), max_size=4)


@st.composite
def hostile_tasks(draw: st.DrawFn) -> list[Task]:
    tasks = []
    for i in range(draw(st.integers(min_value=0, max_value=5))):
        tasks.append(
            Task(
                sdk_app_id=draw(st.integers(min_value=1, max_value=2**40)),
                task_id=f"{i}{draw(HOSTILE)}",  # unique: the table is keyed by it
                region=draw(st.sampled_from(REGIONS) | HOSTILE),
                account=draw(st.sampled_from(["default", "other"]) | HOSTILE),
                labels=draw(st.dictionaries(st.sampled_from(["room", "customer", "a"]), HOSTILE)),
                status=draw(st.sampled_from(Status)),
                status_since=draw(FINITE),
                consecutive_errors=draw(COUNTS),
                last_success_at=draw(st.none() | FINITE),
                storage_files=draw(st.none() | COUNTS),
                upload=draw(UPLOADS),
            )
        )
    return tasks


def reference_text(view: StateView, openmetrics: bool) -> str:
    """prometheus_client's own encoding of the families the fast text replaces."""

    class Families:
        def collect(self) -> list[Metric]:
            return list(reference_families(view))

    encoder, _ = choose_encoder(OPENMETRICS if openmetrics else "")
    return encoder(Families()).decode()


def parsed(text: str, openmetrics: bool) -> list[tuple[str, str, str, list[Sample]]]:
    found = (
        openmetrics_families(text) if openmetrics else list(text_string_to_metric_families(text))
    )
    return [(f.name, f.type, f.documentation, f.samples) for f in found]


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestFastText:
    @FAST
    @given(tasks=hostile_tasks(), info=INFO_NAMES, per_task=st.booleans(), om=st.booleans())
    def test_the_fast_text_parses_to_what_prometheus_client_encodes_for_any_label_values(
        self, tasks: list[Task], info: list[str], per_task: bool, om: bool
    ) -> None:
        view = StateView(tasks=tasks, per_task=per_task, info_labels=info)
        fast = task_series_text(view, Syntax(openmetrics=om))
        reference = reference_text(view, om)
        if om:
            reference = reference.removesuffix("# EOF\n")
        eof = "# EOF\n" if om else ""
        assert parsed(fast + eof, om) == parsed(reference + eof, om)
        # Not only the same meaning: the same bytes, down to the label order.
        assert fast == reference

    @FAST
    @given(tasks=hostile_tasks(), info=INFO_NAMES)
    def test_hostile_label_values_come_back_unchanged_from_both_parsers(
        self, tasks: list[Task], info: list[str]
    ) -> None:
        view = StateView(tasks=tasks, info_labels=info)
        for om in (False, True):
            text = task_series_text(view, Syntax(openmetrics=om)) + ("# EOF\n" if om else "")
            series = {f[0]: f[3] for f in parsed(text, om)}
            infos = {s.labels["task_id"]: s.labels for s in series["trtc_recording_task_info"]}
            assert len(infos) == len(tasks)
            for task in tasks:
                labels = infos[task.task_id]
                assert labels["account"] == task.account
                assert labels["region"] == task.region
                assert labels["sdk_app_id"] == str(task.sdk_app_id)
                for name in info:
                    assert labels[name] == task.labels.get(name, "")

    @pytest.mark.parametrize(
        "accept",
        [
            None,
            "text/plain; version=0.0.4",
            OPENMETRICS,
            f"{OPENMETRICS}; escaping=allow-utf-8",
            "application/openmetrics-text; version=2.0.0; escaping=underscores",
            "text/plain; version=1.0.0; escaping=allow-utf-8",
            # Escapings that rename the families go the reference way: same bytes either way.
            f"{OPENMETRICS}; escaping=dots",
            f"{OPENMETRICS}; escaping=values",
            "text/plain; version=1.0.0; escaping=dots",
        ],
    )
    def test_the_whole_scrape_is_byte_for_byte_the_reference_for_every_accept_header(
        self, accept: str | None
    ) -> None:
        metrics = MonitorMetrics()
        metrics.transitions.labels("default", "ap-guangzhou", "Idle", "InProgress").inc()
        metrics.api_duration.labels("default").observe(0.2)
        metrics.alerts_firing.labels('odd "alert"\n').set(1)
        tasks = [
            make_task("a", labels={"room": 'r "1"\\\nü'}, last_success_at=1_700_000_100.5),
            make_task("b", Status.EXITED, region="ap-mumbai", storage_files=3),
            make_task("c", Status.REMOVED, account="other"),
        ]
        view = StateView(
            tasks=tasks,
            info_labels=["room", "customer"],
            buckets=[BucketGauge("default", "trtc.tencentcloudapi.com", 20.0, 17.5)],
            required_rate={"default": 1.5},
        )
        fast = metrics.render(view, accept)
        reference = metrics.render_reference(view, accept)
        assert fast == reference
        assert "trtc_recording_task_status" in fast[0].decode() or "dots" in str(accept)

    def test_openmetrics_ends_with_exactly_one_eof_after_the_task_series(self) -> None:
        metrics = MonitorMetrics()
        view = StateView(tasks=[make_task("a")], required_rate={"default": 1.0})
        text = metrics.render(view, OPENMETRICS)[0].decode()
        assert text.count("# EOF") == 1
        assert text.endswith("\n# EOF\n")
        assert text.index("trtc_recording_task_status{") < text.index("# EOF")
        names = {f.name for f in openmetrics_families(text)}
        assert {"trtc_recording_task_status", "trtc_recording_tasks"} <= names
        assert {"trtc_monitor_build_info", "trtc_monitor_poll_required_rate"} <= names

    def test_only_the_encoders_that_keep_the_family_names_take_the_fast_path(self) -> None:
        assert syntax_of(choose_encoder("")[0]) == Syntax()
        assert syntax_of(choose_encoder(OPENMETRICS)[0]) == Syntax(openmetrics=True)
        allow = syntax_of(choose_encoder(f"{OPENMETRICS}; escaping=allow-utf-8")[0])
        assert allow == Syntax(openmetrics=True, escaping="allow-utf-8")
        assert syntax_of(choose_encoder(f"{OPENMETRICS}; escaping=dots")[0]) is None

    def test_a_lone_surrogate_in_a_label_costs_one_character_not_the_scrape(self) -> None:
        # JSON lets "\ud800" in; prometheus_client's encoders fail the whole scrape on it.
        task = make_task("a", labels={"room": "x\ud800y"})
        view = StateView(tasks=[task], info_labels=["room"])
        metrics = MonitorMetrics()
        with pytest.raises(UnicodeEncodeError):
            metrics.render_reference(view, None)
        for accept in (None, OPENMETRICS):
            text = metrics.render(view, accept)[0].decode()
            info = [
                s for f in parsed(text, accept is not None) for s in f[3] if s.labels.get("room")
            ]
            assert [s.labels["room"] for s in info] == ["x?y"]

    def test_promtool_finds_nothing_wrong_with_hostile_labels_in_the_fast_text(self) -> None:
        promtool = require_binary("promtool")
        tasks = [
            make_task(
                f"t-{s.value}",
                s,
                labels={"room": 'a "quoted" \\ back\nslash', "customer": "中文 ü 😀"},
                last_success_at=1_700_000_100.0 if i % 2 else None,
                storage_files=i if i % 3 else None,
                region=REGIONS[i % 5],
            )
            for i, s in enumerate(Status)
        ]
        view = StateView(tasks=tasks, info_labels=["room", "customer"])
        text = MonitorMetrics().render(view, None)[0].decode()
        assert text.count("trtc_recording_task_status{") == 7 * 7
        check = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


# ---------------------------------------------------------------------------------------------
# a running daemon


class TestLiveDaemon:
    async def test_a_daemon_alone_is_one_replica_with_its_store_up_and_every_task_owned(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        simulator.add_task(APP, "one", life=Life(idle=600))
        await register(running, "one")
        await wait_status(running, "one", Status.IDLE)

        async def owned() -> str | None:
            text = await scrape(running)
            return text if 'trtc_monitor_owned_tasks{account="default"} 1.0' in text else None

        text = await wait_for_async(owned, timeout=15, what="the owned-task gauge")
        (replicas,) = samples(text, "trtc_monitor_cluster_replicas")
        (up,) = samples(text, "trtc_monitor_store_up")
        (info,) = samples(text, "trtc_monitor_replica_info")
        assert (replicas.value, up.value, info.value) == (1.0, 1.0, 1.0)
        assert info.labels["backend"] == "sqlite"
        assert info.labels["replica"]
        assert samples(text, "trtc_recording_tasks")

    async def test_a_purged_task_and_its_series_disappear(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        simulator.add_task(APP, "kept", life=Life(idle=600))
        simulator.add_task(APP, "purged", life=Life(idle=600))
        await register(running, "kept")
        await register(running, "purged", region="ap-mumbai")
        await wait_status(running, "purged", Status.IDLE)
        await wait_status(running, "kept", Status.IDLE)
        assert 'task_id="purged"' in await scrape(running)

        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/purged", headers=running.auth()
        ) as response:
            assert response.status == 200
        text = await scrape(running)
        status = {
            s.labels["status"]: s.value
            for s in by_task(samples(text, "trtc_recording_task_status"))["purged"]
        }
        assert status["Removed"] == 1.0
        # Nothing is purged within the retention ...
        assert await running.daemon.purge() == []
        # ... and everything ended is once it has passed.
        real_clock = running.daemon.clock
        retention = running.daemon.config.storage.retention
        running.daemon.clock = lambda: real_clock() + retention + 60.0
        try:
            assert await running.daemon.purge() == [TaskKey(APP, "purged")]
        finally:
            running.daemon.clock = real_clock
        text = await scrape(running)
        assert 'task_id="purged"' not in text
        assert 'task_id="kept"' in text
        # Its region had no other task: its fleet counts go too.
        assert 'region="ap-mumbai"' not in "\n".join(
            line for line in text.splitlines() if line.startswith("trtc_recording_tasks{")
        )

    async def test_promtool_finds_nothing_wrong_with_a_live_scrape(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        promtool = require_binary("promtool")
        running = await make_daemon(simulator.url, "metrics:\n  labels: [room, customer]\n")
        simulator.add_task(APP, "idle", life=Life(idle=600))
        simulator.add_task(APP, "recording", life=Life(idle=0.0))
        await register(running, "idle", labels={"room": 'r "1"\\', "customer": "acme"})
        await register(running, "recording", region="ap-singapore", labels={"room": "r-2"})
        await register(running, "unknown", region="ap-beijing")
        await register(running, "removed")
        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/removed", headers=running.auth()
        ) as response:
            assert response.status == 200
        await wait_status(running, "idle", Status.IDLE)
        await wait_status(running, "recording", Status.IN_PROGRESS)
        await wait_status(running, "unknown", Status.ENDED)
        text = await scrape(running)
        assert "trtc_monitor_api_request_duration_seconds_bucket" in text
        assert API_TOKEN not in text
        assert DEFAULT_SECRET_KEY not in text
        check = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")

    async def test_a_real_prometheus_scrapes_the_daemon_and_answers_promql(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        require_binary("prometheus")
        running = await make_daemon(simulator.url)
        simulator.add_task(APP, "rec-1", life=Life(idle=0.0))
        simulator.add_task(APP, "idle-1", life=Life(idle=600))
        await register(running, "rec-1", region="ap-shanghai")
        await register(running, "idle-1")
        await wait_status(running, "rec-1", Status.IN_PROGRESS)
        await wait_status(running, "idle-1", Status.IDLE)
        target = urllib.parse.urlsplit(running.url).netloc
        # Prometheus is driven from a thread: the daemon shares this event loop and must keep
        # answering scrapes while the test waits.
        context: AbstractContextManager[Proc] = prometheus(tmp_path, target)
        server = await asyncio.to_thread(context.__enter__)
        try:
            query = 'trtc_recording_task_status{status="InProgress"} == 1'

            def answered() -> list[dict[str, Any]] | None:
                return promql(server.url, query) or None

            result = await asyncio.to_thread(wait_for, answered, 30, 0.5, query)
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)
        assert len(result) == 1
        labels = result[0]["metric"]
        assert labels["task_id"] == "rec-1"
        assert labels["sdk_app_id"] == str(APP)
        assert labels["region"] == "ap-shanghai"
        assert labels["account"] == "default"
        assert labels["job"] == "trtc-monitor"

    async def test_a_large_scrape_renders_while_the_event_loop_keeps_running(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        running = await make_daemon(simulator.url)
        daemon = running.daemon
        for i in range(10_000):
            task = make_task(f"bulk-{i:05d}", list(Status)[i % 7], region=REGIONS[i % 5])
            daemon.registry.put(task)

        ticks = 0
        during: list[tuple[int, int]] = []
        real_render = daemon.exposition.render

        async def observed_render(view: StateView, accept: str | None) -> Rendered:
            start = ticks
            result = await real_render(view, accept)
            during.append((start, ticks))
            return result

        monkeypatch.setattr(daemon.exposition, "render", observed_render)

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        try:
            text = await scrape(running)
        finally:
            ticking.cancel()
        ((start, end),) = during
        assert end > start, "the event loop did not run while the exposition was rendered"
        assert text.count("trtc_recording_task_status{") == 7 * 10_000


class TestCompression:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("gzip", True),
            ("deflate, gzip;q=1.0, *;q=0.5", True),
            ("GZIP", True),
            ("gzip;q=0", False),
            ("identity", False),
            ("", False),
        ],
    )
    def test_gzip_is_used_only_when_the_client_accepts_it(
        self, header: str, expected: bool
    ) -> None:
        assert accepts_gzip(header) is expected

    async def test_a_gzip_scrape_decompresses_to_the_plain_one(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        await running.register(1400000001, simulator.add_task(1400000001))
        url = f"{running.url}/metrics"
        async with running.session.get(
            url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
        ) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            packed = await r.read()
        async with running.session.get(url, headers={"Accept-Encoding": "identity"}) as r:
            assert "Content-Encoding" not in r.headers
            plain = await r.read()
        unpacked = gzip.decompress(packed)
        assert len(packed) < len(plain)
        # Counters may move between the two scrapes; the task series must not.
        task_lines = [x for x in unpacked.splitlines() if x.startswith(b"trtc_recording_task_info")]
        assert task_lines
        assert task_lines == [
            x for x in plain.splitlines() if x.startswith(b"trtc_recording_task_info")
        ]
