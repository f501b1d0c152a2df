"""Loading a configuration file: every problem reported at its file:line and key path, and
the problems of the file itself (missing, not YAML, empty, not UTF-8)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from monitor.config import ConfigError, check_config, load_config, parse_config
from tests.config_support import SECRET_KEY, errors_of, write


class TestErrorLocations:
    def test_a_typo_is_reported_with_its_line_and_key_path(self) -> None:
        errors = errors_of(
            """
            server:
              listen: "127.0.0.1:9877"
            polling:
              interval: 15s
              intervl: 5s
            """,
            "config/x.yaml",
        )
        assert errors == [
            'config/x.yaml:5: polling.intervl: unknown key (did you mean "interval"?)'
        ]

    def test_a_bad_duration_is_reported_with_its_line_and_the_expected_syntax(self) -> None:
        errors = errors_of(
            """
            # comment
            polling:
              jitter: 10%

              interval: 15 seconds
            """,
        )
        assert errors == [
            'x.yaml:5: polling.interval: invalid duration "15 seconds" '
            "(use Prometheus syntax such as 500ms, 15s, 5m, 1h)"
        ]

    def test_a_wrong_type_is_reported_with_its_line_and_key_path(self) -> None:
        errors = errors_of(
            """
            accounts:
              default:
                endpoint: trtc.tencentcloudapi.com
                rate_limit: twenty
            """,
        )
        assert errors == ["x.yaml:4: accounts.default.rate_limit: Input should be a valid integer"]

    def test_every_problem_in_a_file_is_reported_in_line_order(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            """
            logging:
              format: xml
            accounts:
              prod:
                rate_limit: 0
            tasks:
              - sdk_app_id: 1400000001
                task_id: abc
                region: ap-nowhere
                account: staging
              - {sdk_app_id: -1, task_id: "a/b", region: ap-beijing, account: prod}
            alerts:
              stale: {after: soon}
              receivers:
                - {type: webhook, url: "ftp://hook"}
                - {type: pager}
            bogus: true
            """,
        )
        with pytest.raises(ConfigError) as info:
            load_config(path)
        lines = [
            (int(m[1]), m[2])
            for m in (re.match(r".*?:(\d+): (\S+):", e) for e in info.value.errors)
            if m
        ]
        assert lines == [
            (2, "logging.format"),
            (5, "accounts.prod.rate_limit"),
            (9, "tasks[0].region"),
            (10, "tasks[0].account"),
            (11, "tasks[1].sdk_app_id"),
            (11, "tasks[1].task_id"),
            (13, "alerts.stale.after"),
            (15, "alerts.receivers[0].url"),
            (16, "alerts.receivers[1]"),
            (17, "bogus"),
        ]
        assert len(info.value.errors) == len(lines)
        assert all(e.startswith(f"{path}:") for e in info.value.errors)
        assert 'unknown account "staging" (configured: prod)' in info.value.errors[3]
        assert str(info.value) == "\n".join(info.value.errors)

    def test_check_config_lists_every_error_and_exits_1(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            """
            polling: {interval: 1x, timeout: fast}
            metrics: {labels: [task_id]}
            """,
        )
        code, text = check_config(path, environ={})
        assert code == 1
        assert text.splitlines() == [
            f'{path}:1: polling.interval: invalid duration "1x" '
            "(use Prometheus syntax such as 500ms, 15s, 5m, 1h)",
            f'{path}:1: polling.timeout: invalid duration "fast" '
            "(use Prometheus syntax such as 500ms, 15s, 5m, 1h)",
            f'{path}:2: metrics.labels[0]: label name "task_id" is reserved '
            "(the monitor sets account, alertname, kind, recorder_key, region, sdk_app_id, "
            "severity, status, task_id itself)",
        ]

    def test_a_missing_required_key_points_at_its_parent(self) -> None:
        errors = errors_of(
            """
            tasks:
              - sdk_app_id: 1400000001
                region: ap-beijing
            """,
        )
        assert errors == ["x.yaml:2: tasks[0].task_id: required key is missing"]

    def test_duplicate_keys_are_errors(self) -> None:
        errors = errors_of(
            """
            polling:
              interval: 15s
              interval: 20s
            """,
        )
        assert errors == ["x.yaml:3: polling.interval: duplicate key"]

    def test_errors_inside_an_alias_point_at_the_alias(self) -> None:
        errors = errors_of(
            """
            accounts:
              a: &shared {rate_limit: 0}
              b: *shared
            """,
        )
        assert errors == [
            "x.yaml:2: accounts.a.rate_limit: Input should be greater than 0",
            "x.yaml:3: accounts.b.rate_limit: Input should be greater than 0",
        ]

    def test_duplicate_tasks_are_errors_at_the_second_one(self) -> None:
        errors = errors_of(
            """
            tasks:
              - {sdk_app_id: 1, task_id: abc, region: ap-beijing}
              - {sdk_app_id: 1, task_id: abd, region: ap-beijing}
              - {sdk_app_id: 1, task_id: abc, region: ap-mumbai}
            """,
        )
        assert errors == ["x.yaml:4: tasks[2]: duplicate task 1/abc (also tasks[0])"]

    def test_callbacks_must_name_a_configured_account_when_on(self) -> None:
        text = """
            accounts: {prod: {}}
            callbacks:
              account: default
            """
        assert parse_config(textwrap.dedent(text)).callbacks.enabled is False
        errors = errors_of(text + "  key_env: CB_KEY\n")
        assert errors == [
            'x.yaml:3: callbacks.account: unknown account "default" (configured: prod)'
        ]

    def test_two_sources_for_one_secret_are_an_error(self) -> None:
        errors = errors_of(
            """
            accounts:
              default:
                secret_key_env: KEY
                secret_key_file: /run/key
            """,
        )
        assert errors == [
            "x.yaml:4: accounts.default.secret_key_file: set only one of secret_key_env, "
            "secret_key_file, secret_key (also set: secret_key_env)"
        ]

    def test_an_unknown_receiver_type_names_the_known_ones(self) -> None:
        errors = errors_of("alerts:\n  receivers:\n    - {type: teams, url: 'https://x'}\n")
        assert errors == [
            'x.yaml:3: alerts.receivers[0]: unknown type "teams" '
            "(one of 'alertmanager', 'webhook', 'wecom', 'dingtalk', 'feishu', 'slack')"
        ]

    @pytest.mark.parametrize(
        "account",
        [
            f"{{secret_key: {SECRET_KEY}, secret_key_env: OTHER}}",
            f"{{token: [{SECRET_KEY}]}}",
            f"{{secret_id: {{{SECRET_KEY}: 1}}}}",
            f"{{secret_key: {SECRET_KEY}, unknown: {SECRET_KEY}}}",
        ],
    )
    def test_literal_secret_values_never_appear_in_errors(self, account: str) -> None:
        errors = errors_of(f"accounts:\n  default: {account}\n")
        assert len(errors) == 1
        assert errors[0].startswith("x.yaml:2: accounts.default.")
        assert SECRET_KEY not in errors[0]


class TestFileProblems:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "nope.yaml")
        assert info.value.errors == [f"{tmp_path / 'nope.yaml'}: file not found"]

    def test_directory_instead_of_a_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="is a directory"):
            load_config(tmp_path)

    def test_yaml_syntax_error_names_the_line(self, tmp_path: Path) -> None:
        path = write(tmp_path, "server:\n  listen: 1\n bad: [\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert len(info.value.errors) == 1
        assert info.value.errors[0].startswith(f"{path}:3: invalid YAML:")

    @pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "~\n"])
    def test_empty_file(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.errors == [
            f"{path}: the file is empty (expected sections such as server, accounts, tasks)"
        ]

    @pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str")])
    def test_top_level_must_be_a_mapping(self, text: str, kind: str) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config(text, "t.yaml")
        assert info.value.errors == [
            f"t.yaml:1: the top level must be a mapping of sections "
            f"(server, storage, accounts, ...), not a {kind}"
        ]

    def test_invalid_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_bytes(b"server: {listen: '\xff'}\n")
        with pytest.raises(ConfigError, match="not valid UTF-8"):
            load_config(path)
