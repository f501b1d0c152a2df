"""The Grafana dashboard under deploy/: every query names series the monitor exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy_support import (
    EXPORTED_SERIES,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    grafana_to_promql,
    metric_names,
    require_tool,
    run,
)

# ---------------------------------------------------------------------------------------------
# Grafana


class TestGrafanaDashboard:
    def test_it_is_json_with_a_datasource_variable_and_account_and_region_filters(self) -> None:
        variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource"
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
        for name in ("account", "region"):
            assert variables[name]["type"] == "query"
            query = variables[name]["query"]["query"]
            found = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?, (\w+)\)", query)
            assert found, query
            assert found.group(1) in EXPORTED_SERIES
            assert found.group(2) == name

    def test_every_panel_queries_the_datasource_variable(self) -> None:
        for panel in dashboard_panels():
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]

    def test_every_query_names_only_exported_metrics(self) -> None:
        for where, expr in dashboard_queries():
            names = metric_names(expr)
            assert names, where
            assert names <= EXPORTED_SERIES, (where, names - EXPORTED_SERIES)

    def test_every_query_is_valid_promql(self, tmp_path: Path) -> None:
        rules = [
            {"record": f"grafana:query_{i}", "expr": grafana_to_promql(expr)}
            for i, (_, expr) in enumerate(dashboard_queries())
        ]
        assert all("$" not in rule["expr"] for rule in rules)
        path = tmp_path / "dashboard-queries.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
        result = run([require_tool("promtool"), "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_account_filter_applies_to_every_metric_that_has_an_account_label(self) -> None:
        no_account_label = {
            "trtc_monitor_alerts_firing",
            "trtc_monitor_notifications_total",
            "trtc_monitor_callbacks_total",
            "trtc_monitor_config_last_reload_successful",
            "trtc_monitor_build_info",
        }
        checked = 0
        for where, expr in dashboard_queries():
            for name, matchers in re.findall(r"(trtc_\w+)(\{[^}]*\})?", expr):
                if name not in no_account_label:
                    assert 'account=~"$account"' in matchers, (where, name)
                    checked += 1
        assert checked

    def test_it_shows_tasks_transitions_api_budget_delay_alerts_notifications_callbacks(
        self,
    ) -> None:
        used: set[str] = set()
        for _, expr in dashboard_queries():
            used |= metric_names(expr)
        required = {
            "trtc_recording_tasks",
            "trtc_recording_transitions_total",
            "trtc_monitor_api_requests_total",
            "trtc_monitor_api_request_duration_seconds_bucket",
            "trtc_monitor_ratelimit_limit",
            "trtc_monitor_ratelimit_effective_rate",
            "trtc_monitor_poll_required_rate",
            "trtc_monitor_poll_delay_seconds_bucket",
            "trtc_monitor_alerts_firing",
            "trtc_monitor_notifications_total",
            "trtc_monitor_callbacks_total",
        }
        assert sorted(required - used) == []

    def test_panels_have_unique_ids_and_fit_the_grid(self) -> None:
        panels = dashboard_panels()
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids))
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
