"""The daemon's instrumentation: counters, histograms and gauges updated as things happen.

They live in a private registry (no process-global state) and count what the event bus
announces (transitions, API answers, uploads); the parts that own a figure set it here
(alerts firing, notifications, callbacks, configuration reloads, the cluster, credentials).
Their exposition, with the state series, is :mod:`monitor.metrics.writer`'s.
"""

import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.events import ApiAnswered, EventBus, TransitionRecorded, UploadChanged
from monitor.metrics import writer
from monitor.metrics.state import StateView
from monitor.metrics.writer import Syntax
from monitor.ratelimit.factory import BucketKey
from monitor.uploads import Change

if TYPE_CHECKING:
    from monitor.scheduler import Dispatch

# Buckets around the 6 s request timeout and the rate limiter's 50 ms spacing.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELAY_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True, slots=True)
class _Family:
    """One metric family the daemon updates: its kind, name, help text and label names."""

    kind: type[Counter | Gauge | Histogram]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS  # histograms only

    def register(self, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
        if self.kind is Histogram:
            return Histogram(
                self.name, self.help, self.labels, buckets=self.buckets, registry=registry
            )
        return self.kind(self.name, self.help, self.labels, registry=registry)


_ACCOUNT = ("account",)

# The families by the attribute of MonitorMetrics that holds each, in exposition order.
_FAMILIES: Final[Mapping[str, _Family]] = {
    "transitions": _Family(
        Counter,
        "trtc_recording_transitions",
        "Status transitions recorded.",
        ("account", "region", "from_status", "to_status"),
    ),
    "api_requests": _Family(
        Counter,
        "trtc_monitor_api_requests",
        "TRTC API attempts by outcome and code (code is empty for ok).",
        ("account", "region", "outcome", "code"),
    ),
    "api_duration": _Family(
        Histogram,
        "trtc_monitor_api_request_duration_seconds",
        "Duration of TRTC API attempts.",
        _ACCOUNT,
        DURATION_BUCKETS,
    ),
    "ratelimit_wait": _Family(
        Histogram,
        "trtc_monitor_ratelimit_wait_seconds",
        "Time a due poll waited for the rate limiter.",
        _ACCOUNT,
        WAIT_BUCKETS,
    ),
    "poll_delay": _Family(
        Histogram,
        "trtc_monitor_poll_delay_seconds",
        "How late polls start after their due time.",
        _ACCOUNT,
        DELAY_BUCKETS,
    ),
    "alerts_firing": _Family(
        Gauge, "trtc_monitor_alerts_firing", "Alerts currently firing, by name.", ("alertname",)
    ),
    "notifications": _Family(
        Counter,
        "trtc_monitor_notifications",
        "Alert notification attempts by receiver and outcome.",
        ("receiver", "outcome"),
    ),
    "uploads": _Family(
        Counter,
        "trtc_recording_uploads",
        "Task uploads entering an outcome (done, failed, recovered, overdue); repeated "
        "deliveries count once.",
        ("account", "region", "outcome"),
    ),
    "callbacks": _Family(
        Counter,
        "trtc_monitor_callbacks",
        "TRTC recording callbacks received, by event type and outcome.",
        ("event_type", "outcome"),
    ),
    "config_reload_ok": _Family(
        Gauge,
        "trtc_monitor_config_last_reload_successful",
        "1 if the last configuration (re)load succeeded.",
    ),
    "config_reload_time": _Family(
        Gauge,
        "trtc_monitor_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully.",
    ),
    "cluster_replicas": _Family(
        Gauge, "trtc_monitor_cluster_replicas", "Live replicas this replica sees (1 without Redis)."
    ),
    "owned_tasks": _Family(
        Gauge, "trtc_monitor_owned_tasks", "Tasks this replica polls.", _ACCOUNT
    ),
    "replica_info": _Family(
        Gauge,
        "trtc_monitor_replica_info",
        "Always 1; this replica's id and the store backend it uses.",
        ("replica", "backend"),
    ),
    "store_up": _Family(Gauge, "trtc_monitor_store_up", "1 while the store answers."),
    "credentials_expiry": _Family(
        Gauge,
        "trtc_monitor_credentials_expiry_timestamp_seconds",
        "When the account's current credentials expire (absent for permanent ones).",
        ("account", "source"),
    ),
    "credentials_refresh": _Family(
        Counter,
        "trtc_monitor_credentials_refresh",
        "Attempts to obtain an account's credentials, by the source that answered or "
        "failed and the outcome (success, failure, unchanged).",
        ("account", "source", "outcome"),
    ),
    "_build_info": _Family(
        Gauge,
        "trtc_monitor_build_info",
        "Always 1; the version of the daemon and of Python.",
        ("version", "python_version"),
    ),
}


class MonitorMetrics:
    """The daemon's instrumentation, in its own registry (no process-global state)."""

    transitions: Counter
    api_requests: Counter
    api_duration: Histogram
    ratelimit_wait: Histogram
    poll_delay: Histogram
    alerts_firing: Gauge
    notifications: Counter
    uploads: Counter
    callbacks: Counter
    config_reload_ok: Gauge
    config_reload_time: Gauge
    cluster_replicas: Gauge
    owned_tasks: Gauge
    replica_info: Gauge
    store_up: Gauge
    credentials_expiry: Gauge
    credentials_refresh: Counter
    _build_info: Gauge

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for attribute, family in _FAMILIES.items():
            setattr(self, attribute, family.register(self.registry))
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

    def observe_dispatch(self, dispatch: "Dispatch[Any]") -> None:
        """A poll the scheduler sent on its way: how late it was, how long its limiter held it."""
        bucket = dispatch.bucket
        account = bucket.account if isinstance(bucket, BucketKey) else str(bucket)
        self.poll_delay.labels(account).observe(max(0.0, dispatch.delay))
        self.ratelimit_wait.labels(account).observe(dispatch.limiter_wait)

    def render(self, view: StateView, accept: str | None) -> tuple[bytes, str]:
        """Encode everything for one scrape; safe to run in a worker thread (see
        :func:`monitor.metrics.writer.render`)."""
        return writer.render(self.registry, view, accept)

    def encode_around(
        self, view: StateView, encoder: Callable[[Collector], bytes], syntax: Syntax
    ) -> tuple[bytes, bytes]:
        """What goes before the text written directly (the instrumentation) and after it (the
        limiter gauges, and OpenMetrics' ``# EOF``), as ``encoder`` writes them."""
        return writer.encode_around(self.registry, view, encoder, syntax)

    def render_reference(self, view: StateView, accept: str | None) -> tuple[bytes, str]:
        """The exposition with every state family built by prometheus_client (the slow path)."""
        return writer.render_reference(self.registry, view, accept)
