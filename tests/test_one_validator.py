"""One validator for task specs: the YAML file and the API refuse the same specs alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.config import ConfigError, parse_config
from monitor.taskspec import ValidationError, validate_spec
from tests.daemon_support import (
    APP,
)


class TestOneValidator:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("interval", "100ms"),
            ("interval", "25h"),
            ("task_id", "a/b"),
            ("region", "ap-nowhere"),
            ("labels", {"status": "x"}),
        ],
    )
    def test_yaml_and_the_api_refuse_the_same_specs_with_the_same_words(
        self, field: str, value: Any
    ) -> None:
        spec = {"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou", field: value}
        with pytest.raises(ValidationError) as api:
            validate_spec(spec, ["default"])
        with pytest.raises(ConfigError) as yaml:
            parse_config("tasks:\n  - " + json.dumps(spec) + "\n")
        [line] = yaml.value.errors
        assert api.value.message in line
        assert f"tasks[0].{api.value.field}" in line

    def test_a_numeric_label_is_text_in_yaml_and_refused_in_json(self) -> None:
        config = parse_config(
            f"tasks:\n  - {{sdk_app_id: {APP}, task_id: t, region: ap-beijing, "
            "labels: {room: 42}}\n"
        )
        assert config.tasks[0].labels == {"room": "42"}
        with pytest.raises(ValidationError) as info:
            validate_spec(
                {"sdk_app_id": APP, "task_id": "t", "region": "ap-beijing", "labels": {"r": 4}},
                ["default"],
            )
        assert info.value.field == "labels.r"
