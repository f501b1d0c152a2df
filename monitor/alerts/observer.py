"""What the alerts tell the outside about themselves: the firing counts and the overdue
uploads. The engine reports through :class:`AlertObserver`; :class:`InstrumentObserver` writes
them to the metrics the daemon hands in (``trtc_monitor_alerts_firing``,
``trtc_recording_uploads_total{outcome="overdue"}``), seen only through the narrow
:class:`AlertInstruments` shape, so the alerts never import the metrics module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from prometheus_client import Counter, Gauge

__all__ = ["AlertInstruments", "AlertObserver", "InstrumentObserver"]


class AlertObserver(Protocol):
    def alerts_firing(self, counts: Mapping[str, int]) -> None:
        """The number of firing alerts by name (every known name), after a change."""

    def upload_overdue(self, account: str, region: str) -> None:
        """An upload-overdue alert fired: once per episode."""


class AlertInstruments(Protocol):
    """The metrics the alerts write (the daemon's metrics object has them)."""

    alerts_firing: Gauge
    notifications: Counter
    uploads: Counter


class InstrumentObserver:
    """An :class:`AlertObserver` that writes to Prometheus instruments."""

    __slots__ = ("_instruments",)

    def __init__(self, instruments: AlertInstruments) -> None:
        self._instruments = instruments

    def alerts_firing(self, counts: Mapping[str, int]) -> None:
        gauge = self._instruments.alerts_firing
        for name, count in counts.items():
            gauge.labels(name).set(count)

    def upload_overdue(self, account: str, region: str) -> None:
        # trtc_recording_uploads_total{outcome="overdue"}
        self._instruments.uploads.labels(account, region, "overdue").inc()
