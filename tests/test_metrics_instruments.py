"""The instrument table: every family MonitorMetrics declares is built, of its declared kind."""

from __future__ import annotations

import typing

from monitor.metrics.instruments import _FAMILIES, MonitorMetrics


def test_the_table_builds_exactly_the_declared_instruments_with_their_kinds() -> None:
    declared = typing.get_type_hints(MonitorMetrics)
    assert set(_FAMILIES) == set(declared)
    metrics = MonitorMetrics()
    for attribute, kind in declared.items():
        assert type(getattr(metrics, attribute)) is kind, attribute
        assert _FAMILIES[attribute].kind is kind, attribute


def test_each_family_is_registered_once_with_its_labels_and_buckets() -> None:
    metrics = MonitorMetrics()
    metrics.api_duration.labels("default").observe(0.03)
    metrics.alerts_firing.labels("TaskStuck").set(2)
    families = {family.name: family for family in metrics.registry.collect()}
    assert {f.name for f in _FAMILIES.values()} <= set(families)
    buckets = [
        s.labels["le"]
        for s in families["trtc_monitor_api_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets[:3] == ["0.01", "0.025", "0.05"]
    firing = families["trtc_monitor_alerts_firing"].samples
    assert [(s.labels, s.value) for s in firing] == [({"alertname": "TaskStuck"}, 2.0)]
