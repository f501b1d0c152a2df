"""Prometheus metrics (SPEC section 10b).

Two kinds of series live here:

* instrumentation (counters, histograms) updated as things happen, in a private registry;
* state series computed at scrape time from a snapshot of the daemon's own tables: the per-task
  series, fleet counts and limiter/scheduler gauges. Nothing per task is ever a
  ``Gauge.labels()`` child, so a purged task's series vanish with its row.

A scrape takes a cheap snapshot of the task table on the event loop (which tasks exist) and
renders it in a worker thread, so a large exposition does not stall polling or the API. The
thread reads each task's fields as they are at that moment (copying them all on the loop would
cost the loop time per task): a task whose status changes during a render has exactly one
status series at 1, old or new, though the fleet counts of that scrape may already hold the
other; the next scrape is exact again.

The per-task series and the fleet counts are written straight as exposition text
(``task_series_text``): building them as prometheus_client families costs a label check, a
dictionary and a sort per sample, which at 10,000 tasks is most of a scrape. The rest (the
instrumentation registry and the limiter gauges) goes through prometheus_client's own encoders,
and the fast text is spliced in before OpenMetrics' closing ``# EOF``. ``reference_families``
keeps the family-based path: tests hold the fast text to it, and the scale bench compares both.
"""

from __future__ import annotations

import platform
from collections import Counter as TallyCounter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import exposition as text_exposition
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.exposition import (
    UNDERSCORES,
    escape_label_name,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.events import ApiAnswered, EventBus, TransitionRecorded, UploadChanged
from monitor.models import Status, Task
from monitor.uploads import UPLOAD_PHASES, Change, UploadPhase

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
    # With several replicas (SPEC section 10b): ``tasks`` are the ones this replica owns, the
    # fleet counts cover ``fleet`` (every task; None: ``tasks``), and only the replica that
    # leads exports them (``export_fleet``), so sums over replicas count every task once.
    fleet: Sequence[Task] | None = None
    export_fleet: bool = True


def _fleet_tasks(view: StateView) -> Sequence[Task]:
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
    INFO_FAMILY: "Always 1; carries the task's user labels named in metrics.labels.",
    SINCE_FAMILY: "When the task's current status began.",
    SUCCESS_FAMILY: "When the task was last observed successfully.",
    ERRORS_FAMILY: "Failed polls in a row.",
    FILES_FAMILY: "Entries in StorageFileList at the last observation.",
    UPLOAD_FAMILY: "1 for the task's current upload state, 0 for the others.",
    COUNT_FAMILY: "Registered tasks by last known status.",
}


def _info_names(view: StateView) -> list[str]:
    # Order kept, repeats dropped; the task's own labels are on every series already.
    return [n for n in dict.fromkeys(view.info_labels) if n not in TASK_LABELS]


# ---------------------------------------------------------------------------------------------
# the reference path: prometheus_client families


def _task_families(view: StateView) -> Iterator[Metric]:
    status = GaugeMetricFamily(STATUS_FAMILY, HELP[STATUS_FAMILY], labels=(*TASK_LABELS, "status"))
    info_names = _info_names(view)
    info = GaugeMetricFamily(INFO_FAMILY, HELP[INFO_FAMILY], labels=(*TASK_LABELS, *info_names))
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
        info.add_metric([*ids, *(task.labels.get(n, "") for n in info_names)], 1.0)
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
        (t.account, t.region, t.status) for t in _fleet_tasks(view)
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


def _limiter_families(view: StateView) -> Iterator[Metric]:
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
    """Yields every state family from a snapshot as prometheus_client families."""

    def __init__(self, view: StateView) -> None:
        self._view = view

    def collect(self) -> Iterable[Metric]:
        yield from reference_families(self._view)
        yield from _limiter_families(self._view)


# ---------------------------------------------------------------------------------------------
# the fast path: exposition text written directly

_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def escape_label_value(value: str) -> str:
    """A label value as both text formats quote it: backslash, newline and double quote escaped."""
    # Nearly every value needs nothing, and three scans cost less than translate's general path.
    if "\\" in value or '"' in value or "\n" in value:
        return value.translate(_VALUE_ESCAPES)
    return value


# Values as prometheus_client spells them ("1.0", "1.7e+09"); counts are mostly small.
_go_float: Callable[[float], str] = floatToGoString
_ONE = _go_float(1.0)
_ZERO = _go_float(0.0)
_SMALL_COUNTS = tuple(_go_float(float(n)) for n in range(1024))


def _count_text(n: int) -> str:
    if type(n) is int and 0 <= n < 1024:
        return _SMALL_COUNTS[n]
    return _go_float(float(n))


@dataclass(frozen=True, slots=True)
class Syntax:
    """How one scrape is spelt: the text format (0.0.4 or 1.0.0) or OpenMetrics, and the label
    name escaping the scraper asked for."""

    openmetrics: bool = False
    escaping: str = UNDERSCORES

    def header(self, family: str) -> str:
        # Every family written directly is a gauge, which both formats name without suffixes.
        help_text = HELP[family].replace("\\", r"\\").replace("\n", r"\n")
        if self.openmetrics:
            help_text = help_text.replace('"', r"\"")
        return f"# HELP {family} {help_text}\n# TYPE {family} gauge\n"

    def label(self, name: str) -> str:
        return escape_label_name(name, self.escaping)


# The escapings that leave the family names here (legal legacy names) as they are; a scraper
# asking for another one gets the reference path.
_NAME_PRESERVING = frozenset({UNDERSCORES, om_exposition.ALLOWUTF8})


def syntax_of(encoder: Callable[[Collector], bytes]) -> Syntax | None:
    """The syntax an encoder from ``choose_encoder`` writes; None if the fast text cannot match
    it."""
    if encoder is text_exposition.generate_latest:
        return Syntax()
    if not isinstance(encoder, partial):
        return None
    escaping = encoder.keywords.get("escaping", UNDERSCORES)
    if escaping not in _NAME_PRESERVING:
        return None
    if encoder.func is text_exposition.generate_latest:
        return Syntax(openmetrics=False, escaping=escaping)
    if encoder.func is om_exposition.generate_latest:
        return Syntax(openmetrics=True, escaping=escaping)
    return None


def task_series_text(view: StateView, syntax: Syntax) -> str:
    """The per-task series (if enabled) and the fleet counts, as ``reference_families`` would be
    encoded in ``syntax`` (labels in the encoders' sorted order), without ``# EOF``."""
    out: list[str] = []
    if view.per_task:
        _write_task_series(view, syntax, out)
    if view.export_fleet:
        _write_counts(view, syntax, out)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class SeriesLayout:
    """Everything a task's series text depends on besides the task: the label names as the
    scrape spells them, and the info labels. Equal layouts write equal text for a task."""

    account: str
    region: str
    app: str
    task_id: str
    status_mids: tuple[tuple[Status, str], ...]
    upload_mids: tuple[tuple[UploadPhase, str], ...]
    info_names: tuple[str, ...]
    # The encoders sort label names: the user's fall between the task's own. An int slot is an
    # index into the task's own escaped values, a str slot a user label name.
    info_slots: tuple[tuple[str, int | str], ...]


def series_layout(view: StateView, syntax: Syntax) -> SeriesLayout:
    esc = escape_label_value
    status = syntax.label("status")
    state = syntax.label("state")
    info_names = tuple(_info_names(view))
    return SeriesLayout(
        account=syntax.label("account"),
        region=syntax.label("region"),
        app=syntax.label("sdk_app_id"),
        task_id=syntax.label("task_id"),
        status_mids=tuple((s, f',{status}="{esc(s.value)}",') for s in ALL_STATUSES),
        upload_mids=tuple((p, f',{state}="{esc(p.value)}",') for p in UPLOAD_PHASES),
        info_names=info_names,
        info_slots=tuple(
            (syntax.label(n), TASK_LABELS.index(n) if n in TASK_LABELS else n)
            for n in sorted((*TASK_LABELS, *info_names))
        ),
    )


# The per-task families, in the order they are written; ``task_lines`` answers in this order.
TASK_FAMILIES: tuple[str, ...] = (
    STATUS_FAMILY,
    INFO_FAMILY,
    SINCE_FAMILY,
    SUCCESS_FAMILY,
    ERRORS_FAMILY,
    FILES_FAMILY,
    UPLOAD_FAMILY,
)
_STATUS_OPEN = STATUS_FAMILY + "{"
_INFO_OPEN = INFO_FAMILY + "{"
_SINCE_OPEN = SINCE_FAMILY + "{"
_SUCCESS_OPEN = SUCCESS_FAMILY + "{"
_ERRORS_OPEN = ERRORS_FAMILY + "{"
_FILES_OPEN = FILES_FAMILY + "{"
_UPLOAD_OPEN = UPLOAD_FAMILY + "{"

TaskLines = tuple[str, str, str, str, str, str, str]


def task_lines(task: Task, layout: SeriesLayout) -> TaskLines:
    """One task's lines of each family of ``TASK_FAMILIES`` ("" where it has no sample)."""
    esc = escape_label_value
    own = (esc(task.account), esc(task.region), esc(str(task.sdk_app_id)), esc(task.task_id))
    head = f'{layout.account}="{own[0]}",{layout.region}="{own[1]}",{layout.app}="{own[2]}"'
    tail = f'{layout.task_id}="{own[3]}"}} '
    ids = f"{head},{tail}"
    current = task.status
    phase = task.upload.state
    statuses = "".join(
        f"{_STATUS_OPEN}{head}{mid}{tail}{_ONE if s is current else _ZERO}\n"
        for s, mid in layout.status_mids
    )
    if layout.info_names:
        labels = task.labels
        pairs = ",".join(
            f'{name}="{own[slot] if isinstance(slot, int) else esc(labels.get(slot, ""))}"'
            for name, slot in layout.info_slots
        )
        info = f"{_INFO_OPEN}{pairs}}} {_ONE}\n"
    else:
        info = f"{_INFO_OPEN}{ids}{_ONE}\n"
    return (
        statuses,
        info,
        f"{_SINCE_OPEN}{ids}{_go_float(task.status_since)}\n",
        ""
        if task.last_success_at is None
        else f"{_SUCCESS_OPEN}{ids}{_go_float(task.last_success_at)}\n",
        f"{_ERRORS_OPEN}{ids}{_count_text(task.consecutive_errors)}\n",
        ""
        if task.storage_files is None
        else f"{_FILES_OPEN}{ids}{_count_text(task.storage_files)}\n",
        "".join(
            f"{_UPLOAD_OPEN}{head}{mid}{tail}{_ONE if p is phase else _ZERO}\n"
            for p, mid in layout.upload_mids
        ),
    )


def _write_task_series(view: StateView, syntax: Syntax, out: list[str]) -> None:
    layout = series_layout(view, syntax)
    columns = tuple(zip(*(task_lines(task, layout) for task in view.tasks), strict=True))
    for i, family in enumerate(TASK_FAMILIES):
        out.append(syntax.header(family))
        if columns:
            out.append("".join(columns[i]))


def count_lines(counts: Mapping[tuple[str, str, Status], int], syntax: Syntax) -> str:
    """The fleet counts family (header included) from tasks tallied by account, region and
    status."""
    esc = escape_label_value
    account, region, status = map(syntax.label, ("account", "region", "status"))
    out = [syntax.header(COUNT_FAMILY)]
    for acc, reg in sorted({(a, r) for a, r, _ in counts}):
        prefix = f'{COUNT_FAMILY}{{{account}="{esc(acc)}",{region}="{esc(reg)}",{status}="'
        for s in ALL_STATUSES:
            out.append(f'{prefix}{esc(s.value)}"}} {_count_text(counts.get((acc, reg, s), 0))}\n')
    return "".join(out)


def _write_counts(view: StateView, syntax: Syntax, out: list[str]) -> None:
    counts: TallyCounter[tuple[str, str, Status]] = TallyCounter(
        (t.account, t.region, t.status) for t in _fleet_tasks(view)
    )
    out.append(count_lines(counts, syntax))


# ---------------------------------------------------------------------------------------------
# the exposition


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
    """The instrumentation registry (if any) followed by some state families."""

    def __init__(
        self, registry: CollectorRegistry | None, state: Callable[[], Iterable[Metric]]
    ) -> None:
        self._registry = registry
        self._state = state

    def collect(self) -> Iterable[Metric]:
        if self._registry is not None:
            for metric in self._registry.collect():
                yield _without_created(metric)
        yield from self._state()


_EOF = b"# EOF\n"


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
        self.uploads = Counter(
            "trtc_recording_uploads",
            "Task uploads entering an outcome (done, failed, recovered, overdue); repeated "
            "deliveries count once.",
            ("account", "region", "outcome"),
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
        self.cluster_replicas = Gauge(
            "trtc_monitor_cluster_replicas",
            "Live replicas this replica sees (1 without Redis).",
            registry=r,
        )
        self.owned_tasks = Gauge(
            "trtc_monitor_owned_tasks",
            "Tasks this replica polls.",
            ("account",),
            registry=r,
        )
        self.replica_info = Gauge(
            "trtc_monitor_replica_info",
            "Always 1; this replica's id and the store backend it uses.",
            ("replica", "backend"),
            registry=r,
        )
        self.store_up = Gauge(
            "trtc_monitor_store_up",
            "1 while the store answers.",
            registry=r,
        )
        self.credentials_expiry = Gauge(
            "trtc_monitor_credentials_expiry_timestamp_seconds",
            "When the account's current credentials expire (absent for permanent ones).",
            ("account", "source"),
            registry=r,
        )
        self.credentials_refresh = Counter(
            "trtc_monitor_credentials_refresh",
            "Attempts to obtain an account's credentials, by the source that answered or "
            "failed and the outcome (success, failure, unchanged).",
            ("account", "source", "outcome"),
            registry=r,
        )
        self._build_info = Gauge(
            "trtc_monitor_build_info",
            "Always 1; the version of the daemon and of Python.",
            ("version", "python_version"),
            registry=r,
        )
        self._build_info.labels(__version__, platform.python_version()).set(1)
        self._owned_accounts: set[str] = set()
        # The daemon is built from a configuration that was just loaded successfully.
        self.config_reload_ok.set(1)
        self.config_reload_time.set_to_current_time()

    def set_cluster(self, replicas: int, owned: Mapping[str, int], accounts: Iterable[str]) -> None:
        """This replica's view of the cluster: live replicas, tasks it polls by account (every
        configured account present, 0 when it owns none of its tasks)."""
        self.cluster_replicas.set(replicas)
        names = set(accounts) | set(owned)
        for stale in set(self._owned_accounts) - names:
            self.owned_tasks.remove(stale)
        self._owned_accounts = names
        for account in names:
            self.owned_tasks.labels(account).set(owned.get(account, 0))

    def subscribe(self, bus: EventBus) -> None:
        """Count what happens: stored transitions and every API answer."""
        bus.subscribe(TransitionRecorded, self._on_transition)
        bus.subscribe(ApiAnswered, self._on_answer)
        bus.subscribe(UploadChanged, self._on_upload)

    def _on_upload(self, event: UploadChanged) -> None:
        # Entering done, failed or recovered; "overdue" is counted by the alert engine.
        change = event.change.change
        if change is not None and change is not Change.STARTED:
            self.uploads.labels(event.task.account, event.task.region, change.value).inc()

    def _on_transition(self, event: TransitionRecorded) -> None:
        task, t = event.task, event.transition
        self.transitions.labels(
            task.account, task.region, t.from_status.value, t.to_status.value
        ).inc()

    def _on_answer(self, event: ApiAnswered) -> None:
        result = event.result
        self.api_requests.labels(
            event.account, event.region, result.outcome.value, result.code
        ).inc()
        self.api_duration.labels(event.account).observe(result.duration)

    def render(self, view: StateView, accept: str | None) -> tuple[bytes, str]:
        """Encode everything for one scrape; safe to run in a worker thread.

        The same bytes as ``render_reference`` whenever every label value is valid Unicode; a
        lone surrogate (which JSON lets in) becomes "?" here instead of failing the scrape.
        """
        encoder, content_type = choose_encoder(accept or "")
        syntax = syntax_of(encoder)
        if syntax is None:
            return self.render_reference(view, accept)
        head, tail = self.encode_around(view, encoder, syntax)
        fast = task_series_text(view, syntax).encode("utf-8", "replace")
        return b"".join((head, fast, tail)), content_type

    def encode_around(
        self, view: StateView, encoder: Callable[[Collector], bytes], syntax: Syntax
    ) -> tuple[bytes, bytes]:
        """What goes before the text written directly (the instrumentation) and after it (the
        limiter gauges, and OpenMetrics' ``# EOF``), as ``encoder`` writes them."""
        head = encoder(_Exposition(self.registry, lambda: ()))
        tail = encoder(_Exposition(None, lambda: _limiter_families(view)))
        if syntax.openmetrics:
            # Both parts end with "# EOF", which must come once, last.
            head = head.removesuffix(_EOF)
        return head, tail

    def render_reference(self, view: StateView, accept: str | None) -> tuple[bytes, str]:
        """The exposition with every state family built by prometheus_client (the slow path)."""
        encoder, content_type = choose_encoder(accept or "")
        state = StateCollector(view)
        return encoder(_Exposition(self.registry, state.collect)), content_type


ViewFactory = Callable[[], StateView]
