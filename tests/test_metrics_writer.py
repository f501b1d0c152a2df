"""The exposition writer: the text written directly, held to prometheus_client's own encoders
for any task, label value and scraper's format."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from monitor.metrics import BucketGauge, MonitorMetrics, StateView
from monitor.metrics.state import reference_families
from monitor.metrics.writer import Syntax, syntax_of, task_series_text
from monitor.models import REGIONS, Status, Task
from monitor.uploads import NO_UPLOAD, UploadEvent, apply_upload_event
from tests.metrics_support import (
    OPENMETRICS,
    make_task,
    openmetrics_families,
)
from tests.support import require_binary

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
