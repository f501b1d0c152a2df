"""Scenarios: parsing, the example file, a simulator made from one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.models import Status
from monitor.simulator import (
    FaultKind,
    ManualClock,
    Scenario,
    ScenarioError,
    Simulator,
    load_scenario,
    parse_scenario,
)
from tests.simulator.helpers import APP, EXAMPLE


class TestScenario:
    def test_the_documented_example_loads_and_builds_its_tasks(self) -> None:
        scenario = load_scenario(EXAMPLE, env={"TRTC_CALLBACK_KEY": "cb-key-1"})
        assert scenario.seed == 7
        assert scenario.credentials[0].secret_id == "AKIDSIMULATOR"
        assert "simulator-secret-key" not in repr(scenario)
        assert scenario.callback is not None
        assert scenario.callback.key == "cb-key-1"
        assert "cb-key-1" not in repr(scenario)
        assert scenario.random_life.idle == (0.5, 2.0)
        assert [f.kind for f in scenario.faults] == [
            FaultKind.LATENCY,
            FaultKind.INTERNAL_ERROR,
            FaultKind.DROP,
        ]
        assert scenario.faults[0].latency == pytest.approx(0.02)
        clock = ManualClock()
        sim = Simulator.from_scenario(scenario, clock=clock)
        assert sim.task_status(APP, "demo-idle-hang") is Status.IDLE
        clock.advance(30)
        assert sim.task_status(APP, "demo-idle-timeout") is Status.EXITED
        assert sim.task_info(APP, "demo-idle-timeout")["leave_code"] == 99  # type: ignore[index]
        assert sim.task_status(APP, "demo-normal") is Status.IN_PROGRESS
        clock.advance(600)
        assert sim.task_status(APP, "demo-expiring") is None
        assert sim.task_status(APP, "demo-idle-hang") is Status.IDLE

    def test_an_empty_scenario_gives_the_defaults(self) -> None:
        assert parse_scenario(None) == Scenario()
        assert parse_scenario({"max_tasks_per_app": None}).max_tasks_per_app is None

    @pytest.mark.parametrize(
        ("data", "key"),
        [
            ({"rate_limt": 5}, "rate_limt"),
            ({"rate_limit": 0}, "rate_limit"),
            ({"rate_window": "1 second"}, "rate_window"),
            ({"ended_code": "NotFound"}, "ended_code"),
            (
                {"tasks": [{"sdk_app_id": APP}, {"sdk_app_id": APP, "idle": "soon"}]},
                "tasks[1].idle",
            ),
            ({"tasks": [{"task_id": "x"}]}, "tasks[0].sdk_app_id"),
            ({"tasks": [{"sdk_app_id": APP, "task_id": "a"}] * 2}, "tasks[1].task_id"),
            ({"tasks": [{"sdk_app_id": APP, "hang_idle": "yes"}]}, "tasks[0].hang_idle"),
            ({"faults": [{"kind": "drop", "probability": 1.5}]}, "faults[0].probability"),
            ({"faults": [{"kind": "latency", "latency": "fast"}]}, "faults[0].latency"),
            ({"faults": [{"kind": "error"}]}, "faults[0].code"),
            ({"callback": {"url": "ftp://x", "key": "k"}}, "callback.url"),
            ({"callback": {"url": "http://x"}}, "callback.key"),
            ({"callback": {"url": "http://x", "key_env": "NOPE_NOT_SET"}}, "callback.key_env"),
            (
                {"callback": {"url": "http://x", "key": "k", "events": [301, 999]}},
                "callback.events[1]",
            ),
            ({"credentials": [{"secret_id": "A"}]}, "credentials[0].secret_key"),
            ({"random_life": {"idle": [5, 1]}}, "random_life.idle"),
            ({"random_life": {"hang_idle": 2}}, "random_life.hang_idle"),
            ([1, 2], "(top level)"),
        ],
    )
    def test_an_invalid_scenario_names_the_offending_key(self, data: object, key: str) -> None:
        with pytest.raises(ScenarioError) as caught:
            parse_scenario(data, source="s.yaml", env={})
        assert caught.value.key == key
        assert str(caught.value).startswith(f"s.yaml: {key}: ")

    def test_a_secret_from_the_environment_never_shows_in_errors(self) -> None:
        data = {"credentials": [{"secret_id": "A", "secret_key_env": "K", "token": 5}]}
        with pytest.raises(ScenarioError) as caught:
            parse_scenario(data, env={"K": "very-secret-value"})
        assert caught.value.key == "credentials[0].token"
        assert "very-secret-value" not in str(caught.value)

    def test_a_yaml_syntax_error_names_its_line(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("rate_limit: 20\ntasks: [\n  {sdk_app_id: 1,\n")
        with pytest.raises(ScenarioError, match=r"bad\.yaml: line \d+: not valid YAML"):
            load_scenario(path)

    def test_a_missing_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ScenarioError, match="cannot read"):
            load_scenario(tmp_path / "nope.yaml")

    def test_durations_accept_prometheus_syntax_and_negative_skew(self) -> None:
        scenario = parse_scenario(
            {
                "rate_window": "1500ms",
                "clock_skew": "-10m",
                "hour_length": "1m30s",
                "tasks": [{"sdk_app_id": APP, "in_progress": "2h", "exited": 0.5}],
            }
        )
        assert scenario.rate_window == 1.5
        assert scenario.clock_skew == -600
        assert scenario.hour_length == 90
        life = scenario.tasks[0].life
        assert life is not None
        assert (life.in_progress, life.exited) == (7200, 0.5)

    def test_credentials_and_tokens_from_a_scenario_are_enforced(self, tmp_path: Path) -> None:
        path = tmp_path / "s.yaml"
        path.write_text(
            yaml.safe_dump(
                {"credentials": [{"secret_id": "AKIDX", "secret_key_env": "SK", "token": "tk"}]}
            )
        )
        sim = Simulator.from_scenario(load_scenario(path, env={"SK": "sk-value"}))
        assert sim.credentials == {"AKIDX": "sk-value"}
        assert sim.tokens == {"AKIDX": "tk"}
