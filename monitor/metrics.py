"""Prometheus metrics (SPEC section 10b).

Two kinds of series live here:

* instrumentation (counters, histograms) updated as things happen, in a private registry;
* state series computed at scrape time from the daemon's own tables by ``StateCollector``: the
  per-task series, fleet counts and limiter/scheduler gauges. Nothing per task is ever a
  ``Gauge.labels()`` child, so a purged task's series vanish with its row.

A scrape takes a cheap snapshot of the task table on the event loop (which tasks exist) and
renders it in a worker thread, so a large exposition does not stall polling or the API. The
thread reads each task's fields as they are at that moment (copying them all on the loop would
cost the loop time per task): a task whose status changes during a render has exactly one
status series at 1, old or new, though the fleet counts of that scrape may already hold the
other; the next scrape is exact again.
"""

from __future__ import annotations

import platform
from collections import Counter as TallyCounter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.models import Status, Task

TASK_LABELS = ("account", "region", "sdk_app_id", "task_id")
ALL_STATUSES: tuple[Status, ...] = tuple(Status)

# Buckets around the 6 s request timeout and the rate limiter's 50 ms spacing.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELAY_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True, slots=True)
class BucketGauge:
    """Limiter figures of one (account, access host) bucket at scrape time."""

    account: str
    endpoint: str
    limit: float
    effective_rate: float


@dataclass(slots=True)
class StateView:
    """What the state collector reads; taken on the event loop, rendered elsewhere."""

    tasks: Sequence[Task] = ()
    per_task: bool = True
    info_labels: Sequence[str] = ()
    buckets: Sequence[BucketGauge] = ()
    required_rate: dict[str, float] = field(default_factory=dict)


def _task_families(view: StateView) -> Iterator[Metric]:
    status = GaugeMetricFamily(
        "trtc_recording_task_status",
        "1 for the task's current status, 0 for the others.",
        labels=(*TASK_LABELS, "status"),
    )
    info_names = [n for n in view.info_labels if n not in TASK_LABELS]
    info = GaugeMetricFamily(
        "trtc_recording_task_info",
        "Always 1; carries the task's user labels named in metrics.labels.",
        labels=(*TASK_LABELS, *info_names),
    )
    since = GaugeMetricFamily(
        "trtc_recording_task_status_since_timestamp_seconds",
        "When the task's current status began.",
        labels=TASK_LABELS,
    )
    success = GaugeMetricFamily(
        "trtc_recording_task_last_success_timestamp_seconds",
        "When the task was last observed successfully.",
        labels=TASK_LABELS,
    )
    errors = GaugeMetricFamily(
        "trtc_recording_task_consecutive_errors",
        "Failed polls in a row.",
        labels=TASK_LABELS,
    )
    files = GaugeMetricFamily(
        "trtc_recording_task_storage_files",
        "Entries in StorageFileList at the last observation.",
        labels=TASK_LABELS,
    )
    for task in view.tasks:
        ids = [task.account, task.region, str(task.sdk_app_id), task.task_id]
        current = task.status
        for s in ALL_STATUSES:
            status.add_metric([*ids, s.value], 1.0 if s is current else 0.0)
        info.add_metric([*ids, *(task.labels.get(n, "") for n in info_names)], 1.0)
        since.add_metric(ids, task.status_since)
        if task.last_success_at is not None:
            success.add_metric(ids, task.last_success_at)
        errors.add_metric(ids, float(task.consecutive_errors))
        if task.storage_files is not None:
            files.add_metric(ids, float(task.storage_files))
    yield from (status, info, since, success, errors, files)


def _fleet_families(view: StateView) -> Iterator[Metric]:
    counts: TallyCounter[tuple[str, str, Status]] = TallyCounter(
        (t.account, t.region, t.status) for t in view.tasks
    )
    pairs = sorted({(a, r) for a, r, _ in counts})
    tasks = GaugeMetricFamily(
        "trtc_recording_tasks",
        "Registered tasks by last known status.",
        labels=("account", "region", "status"),
    )
    for account, region in pairs:
        for s in ALL_STATUSES:
            tasks.add_metric([account, region, s.value], float(counts[(account, region, s)]))
    yield tasks

    limit = GaugeMetricFamily(
        "trtc_monitor_ratelimit_limit",
        "Configured DescribeCloudRecording requests per rate window for the bucket.",
        labels=("account", "endpoint"),
    )
    effective = GaugeMetricFamily(
        "trtc_monitor_ratelimit_effective_rate",
        "Requests per second the limiter currently allows, after backoff and guard.",
        labels=("account", "endpoint"),
    )
    for b in view.buckets:
        limit.add_metric([b.account, b.endpoint], b.limit)
        effective.add_metric([b.account, b.endpoint], b.effective_rate)
    yield limit
    yield effective

    required = GaugeMetricFamily(
        "trtc_monitor_poll_required_rate",
        "Requests per second that all tasks' intervals need.",
        labels=("account",),
    )
    for account, rate in sorted(view.required_rate.items()):
        required.add_metric([account], rate)
    yield required


class StateCollector(Collector):
    """Yields state families from a snapshot; a fresh one serves each scrape."""

    def __init__(self, view: StateView) -> None:
        self._view = view

    def collect(self) -> Iterable[Metric]:
        if self._view.per_task:
            yield from _task_families(self._view)
        yield from _fleet_families(self._view)


def _without_created(metric: Metric) -> Metric:
    """The family without its ``_created`` samples.

    prometheus_client adds one per counter and histogram child; the text format turns them into
    separate gauges that are not part of the metric contract and double the instrumentation
    series Prometheus stores.
    """
    created = f"{metric.name}_created"
    if not any(sample.name == created for sample in metric.samples):
        return metric
    copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    copy.samples = [sample for sample in metric.samples if sample.name != created]
    return copy


class _Exposition(Collector):
    """The instrumentation registry followed by one scrape's state families."""

    def __init__(self, registry: CollectorRegistry, state: StateCollector) -> None:
        self._registry = registry
        self._state = state

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            yield _without_created(metric)
        yield from self._state.collect()


class MonitorMetrics:
    """The daemon's instrumentation, in its own registry (no process-global state)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.transitions = Counter(
            "trtc_recording_transitions",
            "Status transitions recorded.",
            ("account", "region", "from_status", "to_status"),
            registry=r,
        )
        self.api_requests = Counter(
            "trtc_monitor_api_requests",
            "TRTC API attempts by outcome and code (code is empty for ok).",
            ("account", "region", "outcome", "code"),
            registry=r,
        )
        self.api_duration = Histogram(
            "trtc_monitor_api_request_duration_seconds",
            "Duration of TRTC API attempts.",
            ("account",),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ratelimit_wait = Histogram(
            "trtc_monitor_ratelimit_wait_seconds",
            "Time a due poll waited for the rate limiter.",
            ("account",),
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.poll_delay = Histogram(
            "trtc_monitor_poll_delay_seconds",
            "How late polls start after their due time.",
            ("account",),
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.alerts_firing = Gauge(
            "trtc_monitor_alerts_firing",
            "Alerts currently firing, by name.",
            ("alertname",),
            registry=r,
        )
        self.notifications = Counter(
            "trtc_monitor_notifications",
            "Alert notification attempts by receiver and outcome.",
            ("receiver", "outcome"),
            registry=r,
        )
        self.callbacks = Counter(
            "trtc_monitor_callbacks",
            "TRTC recording callbacks received, by event type and outcome.",
            ("event_type", "outcome"),
            registry=r,
        )
        self.config_reload_ok = Gauge(
            "trtc_monitor_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded.",
            registry=r,
        )
        self.config_reload_time = Gauge(
            "trtc_monitor_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            registry=r,
        )
        self._build_info = Gauge(
            "trtc_monitor_build_info",
            "Always 1; the version of the daemon and of Python.",
            ("version", "python_version"),
            registry=r,
        )
        self._build_info.labels(__version__, platform.python_version()).set(1)
        # The daemon is built from a configuration that was just loaded successfully.
        self.config_reload_ok.set(1)
        self.config_reload_time.set_to_current_time()

    def render(self, view: StateView, accept: str | None) -> tuple[bytes, str]:
        """Encode everything for one scrape; safe to run in a worker thread."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(_Exposition(self.registry, StateCollector(view))), content_type


ViewFactory = Callable[[], StateView]
