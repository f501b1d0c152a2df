"""The state series: what the daemon's own tables say at scrape time, as metric families.

Per-task series (status, info, status since, last success, errors, storage files, upload
state), the fleet counts and the limiter and scheduler gauges are computed from a snapshot of
the task table at each scrape, never kept as ``Gauge.labels()`` children, so a purged task's
series vanish with its row. This module holds the snapshot (:class:`StateView`), the family
names and help texts, and the families as prometheus_client builds them (the reference path);
:mod:`monitor.metrics.writer` writes the same series straight as text (the fast path).
"""

from collections import Counter as TallyCounter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.models import Status, Task
from monitor.uploads import UPLOAD_PHASES

TASK_LABELS = ("account", "region", "sdk_app_id", "task_id")
# Labels of the info series only, after the task's own: a relay recording's RecorderKey ("" for
# a task without one).
INFO_OWN_LABELS = ("kind", "recorder_key")
ALL_STATUSES: tuple[Status, ...] = tuple(Status)


@dataclass(frozen=True, slots=True)
class BucketGauge:
    """Limiter figures of one (account, access host) bucket at scrape time."""

    account: str
    endpoint: str
    limit: float
    effective_rate: float
    action: str = "DescribeCloudRecording"  # each action has a budget of its own


@dataclass(slots=True)
class StateView:
    """What the state collector reads; taken on the event loop, rendered elsewhere."""

    tasks: Sequence[Task] = ()
    per_task: bool = True
    info_labels: Sequence[str] = ()
    buckets: Sequence[BucketGauge] = ()
    required_rate: dict[str, float] = field(default_factory=dict)
    # With several replicas: ``tasks`` are the ones this replica owns, the
    # fleet counts cover ``fleet`` (every task; None: ``tasks``), and only the replica that
    # leads exports them (``export_fleet``), so sums over replicas count every task once.
    fleet: Sequence[Task] | None = None
    export_fleet: bool = True


def fleet_tasks(view: StateView) -> Sequence[Task]:
    return view.tasks if view.fleet is None else view.fleet


STATUS_FAMILY = "trtc_recording_task_status"
INFO_FAMILY = "trtc_recording_task_info"
SINCE_FAMILY = "trtc_recording_task_status_since_timestamp_seconds"
SUCCESS_FAMILY = "trtc_recording_task_last_success_timestamp_seconds"
ERRORS_FAMILY = "trtc_recording_task_consecutive_errors"
FILES_FAMILY = "trtc_recording_task_storage_files"
UPLOAD_FAMILY = "trtc_recording_task_upload_state"
COUNT_FAMILY = "trtc_recording_tasks"

# One table for both writers, so the fast text and the reference families cannot drift apart.
HELP: dict[str, str] = {
    STATUS_FAMILY: "1 for the task's current status, 0 for the others.",
    INFO_FAMILY: "Always 1; carries the task's kind, its RecorderKey and the user labels named "
    "in metrics.labels.",
    SINCE_FAMILY: "When the task's current status began.",
    SUCCESS_FAMILY: "When the task was last observed successfully.",
    ERRORS_FAMILY: "Failed polls in a row.",
    FILES_FAMILY: "Entries in StorageFileList at the last observation.",
    UPLOAD_FAMILY: "1 for the task's current upload state, 0 for the others.",
    COUNT_FAMILY: "Registered tasks by last known status.",
}


def info_label_names(view: StateView) -> list[str]:
    # Order kept, repeats dropped; the task's own labels are on every series already.
    own = (*TASK_LABELS, *INFO_OWN_LABELS)
    return [n for n in dict.fromkeys(view.info_labels) if n not in own]


def _task_families(view: StateView) -> Iterator[Metric]:
    status = GaugeMetricFamily(STATUS_FAMILY, HELP[STATUS_FAMILY], labels=(*TASK_LABELS, "status"))
    info_names = info_label_names(view)
    info = GaugeMetricFamily(
        INFO_FAMILY, HELP[INFO_FAMILY], labels=(*TASK_LABELS, *INFO_OWN_LABELS, *info_names)
    )
    since = GaugeMetricFamily(SINCE_FAMILY, HELP[SINCE_FAMILY], labels=TASK_LABELS)
    success = GaugeMetricFamily(SUCCESS_FAMILY, HELP[SUCCESS_FAMILY], labels=TASK_LABELS)
    errors = GaugeMetricFamily(ERRORS_FAMILY, HELP[ERRORS_FAMILY], labels=TASK_LABELS)
    files = GaugeMetricFamily(FILES_FAMILY, HELP[FILES_FAMILY], labels=TASK_LABELS)
    upload = GaugeMetricFamily(UPLOAD_FAMILY, HELP[UPLOAD_FAMILY], labels=(*TASK_LABELS, "state"))
    for task in view.tasks:
        ids = [task.account, task.region, str(task.sdk_app_id), task.task_id]
        current = task.status
        for s in ALL_STATUSES:
            status.add_metric([*ids, s.value], 1.0 if s is current else 0.0)
        own = [task.kind.value, task.recorder_key or ""]
        info.add_metric([*ids, *own, *(task.labels.get(n, "") for n in info_names)], 1.0)
        since.add_metric(ids, task.status_since)
        if task.last_success_at is not None:
            success.add_metric(ids, task.last_success_at)
        errors.add_metric(ids, float(task.consecutive_errors))
        if task.storage_files is not None:
            files.add_metric(ids, float(task.storage_files))
        phase = task.upload.state
        for p in UPLOAD_PHASES:
            upload.add_metric([*ids, p.value], 1.0 if p is phase else 0.0)
    yield from (status, info, since, success, errors, files, upload)


def _count_family(view: StateView) -> Metric:
    counts: TallyCounter[tuple[str, str, Status]] = TallyCounter(
        (t.account, t.region, t.status) for t in fleet_tasks(view)
    )
    pairs = sorted({(a, r) for a, r, _ in counts})
    tasks = GaugeMetricFamily(
        COUNT_FAMILY, HELP[COUNT_FAMILY], labels=("account", "region", "status")
    )
    for account, region in pairs:
        for s in ALL_STATUSES:
            tasks.add_metric([account, region, s.value], float(counts[(account, region, s)]))
    return tasks


def reference_families(view: StateView) -> Iterator[Metric]:
    """What ``task_series_text`` writes, as prometheus_client families (the slow path)."""
    if view.per_task:
        yield from _task_families(view)
    if view.export_fleet:
        yield _count_family(view)


def limiter_families(view: StateView) -> Iterator[Metric]:
    limit = GaugeMetricFamily(
        "trtc_monitor_ratelimit_limit",
        "Configured requests of the action per rate window for the bucket.",
        labels=("account", "endpoint", "action"),
    )
    effective = GaugeMetricFamily(
        "trtc_monitor_ratelimit_effective_rate",
        "Requests per second the limiter currently allows, after backoff and guard.",
        labels=("account", "endpoint", "action"),
    )
    for b in view.buckets:
        limit.add_metric([b.account, b.endpoint, b.action], b.limit)
        effective.add_metric([b.account, b.endpoint, b.action], b.effective_rate)
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
    """Yields every state family from a snapshot as prometheus_client families."""

    def __init__(self, view: StateView) -> None:
        self._view = view

    def collect(self) -> Iterable[Metric]:
        yield from reference_families(self._view)
        yield from limiter_families(self._view)


ViewFactory = Callable[[], StateView]
