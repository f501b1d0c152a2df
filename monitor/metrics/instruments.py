"""The daemon's instrumentation: counters, histograms and gauges updated as things happen.

They live in a private registry (no process-global state) and count what the event bus
announces (transitions, API answers, uploads); the parts that own a figure set it here
(alerts firing, notifications, callbacks, configuration reloads, the cluster, credentials).
Their exposition, with the state series, is :mod:`monitor.metrics.writer`'s.
"""

import platform
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

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
