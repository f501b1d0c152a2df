"""What a refresh attempt changes outside the provider: the two credential metrics, and
whatever else listens (the alert engine's expiring condition)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from monitor.credentials.refresh import RefreshEvent
from monitor.metrics import MonitorMetrics


class RefreshRecorder:
    """A ``RefreshObserver`` for every account of a daemon.

    ``trtc_monitor_credentials_expiry_timestamp_seconds`` has one series per account, labelled
    with the source in use; when the source changes (or the new credentials are permanent) the
    old series goes, so no stale expiry lingers.
    """

    def __init__(
        self,
        metrics: MonitorMetrics,
        listeners: Iterable[Callable[[RefreshEvent], None]] = (),
    ) -> None:
        self._metrics = metrics
        self._listeners = list(listeners)
        self._expiry_source: dict[str, str] = {}

    def add_listener(self, listener: Callable[[RefreshEvent], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, event: RefreshEvent) -> None:
        m = self._metrics
        m.credentials_refresh.labels(event.account, event.source, event.outcome).inc()
        if event.outcome != "failure":
            self._set_expiry(event.account, event.source, event.expires_at)
        for listener in self._listeners:
            listener(event)

    def _set_expiry(self, account: str, source: str, expires_at: float | None) -> None:
        gauge = self._metrics.credentials_expiry
        old = self._expiry_source.get(account)
        if old is not None and (old != source or expires_at is None):
            gauge.remove(account, old)
            del self._expiry_source[account]
        if expires_at is not None:
            gauge.labels(account, source).set(expires_at)
            self._expiry_source[account] = source

    def forget(self, account: str) -> None:
        """The account left the configuration: its expiry series goes with it."""
        old = self._expiry_source.pop(account, None)
        if old is not None:
            self._metrics.credentials_expiry.remove(account, old)
