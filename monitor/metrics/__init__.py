"""Prometheus metrics: the instruments, the state series computed at scrape, and the scrape.

* :mod:`~monitor.metrics.instruments`: counters, histograms and gauges updated as things happen,
  in a private registry (:class:`MonitorMetrics`);
* :mod:`~monitor.metrics.state`: the state series computed at scrape time from a snapshot of the
  daemon's own tables (:class:`StateView`): per-task series, fleet counts, limiter and scheduler
  gauges, as prometheus_client families;
* :mod:`~monitor.metrics.writer`: the same state series written straight as exposition text,
  spliced into prometheus_client's encoding of the rest;
* :mod:`~monitor.metrics.scrape`: scrapes served on the event loop in short slices, each task's
  series text kept between them (:class:`Exposition`).

A scrape takes a cheap snapshot of the task table on the event loop (which tasks exist) and
renders it, so a large exposition does not stall polling or the API. The writer reads each
task's fields as they are at that moment (copying them all on the loop would cost the loop
time per task): a task whose status changes during a render has exactly one status series at
1, old or new, though the fleet counts of that scrape may already hold the other; the next
scrape is exact again.
"""

from __future__ import annotations

from monitor.metrics.instruments import MonitorMetrics
from monitor.metrics.scrape import Exposition, Rendered
from monitor.metrics.state import BucketGauge, StateView

__all__ = ["BucketGauge", "Exposition", "MonitorMetrics", "Rendered", "StateView"]
