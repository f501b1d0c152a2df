from __future__ import annotations

import logging
import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest

from monitor.config import (
    AlertmanagerReceiver,
    Config,
    ConfigError,
    StaleAfter,
    WebhookReceiver,
    check_config,
    load_config,
    parse_config,
    parse_listen,
    resolve_secrets,
)
from monitor.models import Status
from monitor.secrets import (
    MASK,
    Credentials,
    Secret,
    SecretError,
    SecretSource,
    parse_headers,
)
from monitor.trtc.client import Endpoint
from monitor.trtc.errors import DEFAULT_ENDED_CODES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "monitor.example.yaml"
DEMO = ROOT / "config" / "demo.yaml"

SECRET_KEY = "sk-Zq8v1TfYb7Wl0pXr"
SECRET_ID = "AKIDexample0000000000"


def write(tmp_path: Path, text: str, name: str = "monitor.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(text: str, source: str = "x.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).lstrip("\n"), source)
    return info.value.errors


def model_fields(model: type[pydantic.BaseModel]) -> set[str]:
    """Every field name of ``model`` and of the models nested in it."""
    names: set[str] = set()
    pending: list[Any] = [model]
    while pending:
        tp = pending.pop()
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            for name, info in tp.model_fields.items():
                names.add(name)
                pending.append(info.annotation)
        else:
            pending.extend(typing.get_args(tp))
    return names


class TestShippedFiles:
    @pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example", "demo"])
    def test_loads_without_errors(self, path: Path) -> None:
        config = load_config(path)
        assert config.source == str(path)

    @pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example", "demo"])
    def test_check_config_passes_on_a_machine_without_the_secrets(self, path: Path) -> None:
        code, text = check_config(path, environ={}, syntax_only=True)
        assert code == 0, text
        assert f"{path}: valid" in text
        assert "warning:" in text  # the unset variables are mentioned, not fatal

    def test_example_documents_every_key(self) -> None:
        text = EXAMPLE.read_text()
        missing = sorted(name for name in model_fields(Config) if f"{name}:" not in text)
        assert missing == []

    def test_example_uses_the_spec_defaults(self) -> None:
        config = load_config(EXAMPLE)
        default = Config()
        assert config.polling.interval == default.polling.interval == 15.0
        assert config.polling.jitter == default.polling.jitter == 0.1
        assert config.storage.retention == default.storage.retention == 86400.0
        assert config.accounts["default"].rate_limit == 20
        assert config.alerts.stale.after == default.alerts.stale.after
        assert config.logging == default.logging

    def test_demo_is_fast_and_uses_the_demo_account_everywhere(self) -> None:
        config = load_config(DEMO)
        assert list(config.accounts) == ["demo"]
        assert config.callbacks.enabled
        assert config.callbacks.account == "demo"
        assert config.polling.interval <= 2
        assert config.polling.interval_by_status[Status.EXITED] <= 1
        assert config.alerts.stale.after.seconds(config.polling.interval) < 60
        assert config.alerts.idle.after < 60
        assert config.logging.format == "console"
        demo = config.accounts["demo"]
        assert demo.secret_key_source("demo").describe() == (
            "environment variable TRTC_DEMO_SECRET_KEY"
        )

    def test_demo_resolves_once_the_demo_sets_its_variables(self) -> None:
        environ = {
            "TRTC_DEMO_SECRET_ID": SECRET_ID,
            "TRTC_DEMO_SECRET_KEY": SECRET_KEY,
            "TRTC_DEMO_CALLBACK_KEY": "callback-key-1234",
            "TRTC_DEMO_API_TOKEN": "api-token-1234",
        }
        secrets = resolve_secrets(load_config(DEMO), environ)
        assert secrets.accounts["demo"] == Credentials(SECRET_ID, SECRET_KEY, None)
        assert secrets.callback_key == Secret("callback-key-1234")


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
            "(the monitor sets account, alertname, region, sdk_app_id, severity, status, "
            "task_id itself)",
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


class TestDefaults:
    def test_an_empty_mapping_gives_every_documented_default(self) -> None:
        config = parse_config("{}")
        assert config.server.listen == "0.0.0.0:9877"
        assert config.server.max_body_bytes == 1024 * 1024
        assert config.server.api_token_source() is None
        assert config.storage.backend == "sqlite"
        assert config.storage.path == Path("./data/trtc-monitor.db")
        assert config.storage.retention == 24 * 3600
        assert config.polling.interval == 15
        assert config.polling.jitter == 0.1
        assert config.polling.timeout == 6
        assert config.polling.ended_codes == DEFAULT_ENDED_CODES
        assert config.polling.resource_expired_hours == 72
        assert config.polling.max_in_flight == 64
        assert config.tasks == ()
        assert config.callbacks.path == "/callbacks/trtc"
        assert config.callbacks.enabled is False
        assert config.callbacks.region == "ap-guangzhou"
        assert config.alerts.exit.expected_leave_codes == (0, 1, 2)
        assert config.alerts.exit.severity == "critical"
        assert config.alerts.error.consecutive == 3
        assert config.alerts.stale.after == StaleAfter(multiple=3.0)
        assert config.alerts.idle.after == 300
        assert config.alerts.receivers == ()
        assert config.metrics.per_task is True
        assert config.logging.format == "json"
        assert config.logging.level == "info"

    def test_without_accounts_one_default_account_reads_the_standard_variables(self) -> None:
        config = parse_config("polling: {interval: 10s}\n")
        assert list(config.accounts) == ["default"]
        account = config.accounts["default"]
        assert account.endpoint == "trtc.tencentcloudapi.com"
        assert account.language == "en-US"
        assert (account.rate_limit, account.rate_window, account.rate_guard) == (20, 1.0, 0.02)
        assert account.secret_id_source("default") == SecretSource.from_env(
            "TENCENTCLOUD_SECRET_ID", "accounts.default.secret_id"
        )
        assert account.secret_key_source("default").ref == "TENCENTCLOUD_SECRET_KEY"
        assert account.token_source("default").ref == "TENCENTCLOUD_SESSION_TOKEN"

    def test_an_account_naming_no_source_uses_the_standard_variables(self) -> None:
        config = parse_config("accounts:\n  prod:\n    rate_limit: 5\n  staging:\n")
        assert config.accounts["prod"].secret_key_source("prod").ref == "TENCENTCLOUD_SECRET_KEY"
        assert config.accounts["staging"].rate_limit == 20

    def test_empty_sections_mean_defaults(self) -> None:
        config = parse_config("server:\npolling:\ntasks:\n")
        assert config == Config()

    def test_receivers_are_named_after_their_type_and_position(self) -> None:
        config = parse_config(
            """
alerts:
  receivers:
    - {type: alertmanager, urls: ["http://am:9093"]}
    - {type: webhook, url: "https://hook.example/x", name: ops}
    - {type: webhook, url: "https://hook.example/y"}
"""
        )
        names = [r.name for r in config.alerts.receivers]
        assert names == ["alertmanager-0", "ops", "webhook-2"]
        first, second = config.alerts.receivers[:2]
        assert isinstance(first, AlertmanagerReceiver)
        assert (first.resend, first.timeout, first.queue_size) == (60, 10, 1000)
        assert isinstance(second, WebhookReceiver)
        assert second.resend is None

    def test_receiver_names_must_be_unique(self) -> None:
        errors = errors_of(
            """
            alerts:
              receivers:
                - {type: webhook, url: "https://a.example", name: ops}
                - {type: webhook, url: "https://b.example", name: ops}
            """,
        )
        assert errors == [
            'x.yaml:4: alerts.receivers[1].name: duplicate receiver name "ops" (also receivers[0])'
        ]


class TestValues:
    def test_durations_accept_plain_seconds(self) -> None:
        config = parse_config("polling: {interval: 2.5, timeout: 1}\nstorage: {retention: 1h}\n")
        assert (config.polling.interval, config.polling.timeout) == (2.5, 1.0)
        assert config.storage.retention == 3600.0

    @pytest.mark.parametrize("value", ["0", "0s", "-1", "true"])
    def test_durations_must_be_positive(self, value: str) -> None:
        errors = errors_of(f"polling: {{interval: {value}}}\n")
        assert len(errors) == 1
        assert errors[0].startswith("x.yaml:1: polling.interval:")

    def test_intervals_by_status_take_pollable_statuses_only(self) -> None:
        config = parse_config("polling: {interval_by_status: {Exited: 5s, Idle: 1m}}\n")
        assert config.polling.interval_by_status == {Status.EXITED: 5.0, Status.IDLE: 60.0}
        errors = errors_of("polling:\n  interval_by_status:\n    Ended: 5s\n    Runing: 1s\n")
        assert errors == [
            "x.yaml:3: polling.interval_by_status.Ended: Ended tasks are not polled",
            'x.yaml:4: polling.interval_by_status.Runing: unknown status "Runing" '
            "(one of Pending, Idle, InProgress, Exited)",
        ]

    def test_interval_for_prefers_the_task_then_the_status_then_the_default(self) -> None:
        polling = parse_config("polling: {interval: 15s, interval_by_status: {Exited: 5s}}").polling
        assert polling.interval_for(Status.EXITED, 2.0) == 2.0
        assert polling.interval_for(Status.EXITED) == 5.0
        assert polling.interval_for(Status.IN_PROGRESS) == 15.0

    @pytest.mark.parametrize(
        ("value", "fraction"), [("10%", 0.1), ("0%", 0.0), (0.25, 0.25), ("99.5%", 0.995)]
    )
    def test_jitter_is_a_percentage_below_100(self, value: object, fraction: float) -> None:
        assert parse_config(f"polling: {{jitter: {value}}}").polling.jitter == pytest.approx(
            fraction
        )

    @pytest.mark.parametrize("value", ["100%", "150%", "-5%", "lots"])
    def test_jitter_out_of_range_is_rejected(self, value: str) -> None:
        assert len(errors_of(f"polling: {{jitter: {value}}}")) == 1

    @pytest.mark.parametrize(("value", "ok"), [("0%", True), ("50%", True), ("51%", False)])
    def test_rate_guard_is_between_0_and_50_percent(self, value: str, ok: bool) -> None:
        text = f"accounts: {{a: {{rate_guard: {value}}}}}"
        if ok:
            assert parse_config(text).accounts["a"].rate_guard == float(value[:-1]) / 100
        else:
            assert errors_of(text) == [
                "x.yaml:1: accounts.a.rate_guard: rate_guard must be between 0% and 50%"
            ]

    def test_stale_after_is_a_multiple_or_a_duration(self) -> None:
        multiple = parse_config("alerts: {stale: {after: 2.5x}}").alerts.stale.after
        fixed = parse_config("alerts: {stale: {after: 2m}}").alerts.stale.after
        assert multiple.seconds(10.0) == 25.0
        assert fixed.seconds(10.0) == 120.0
        assert (str(multiple), str(fixed)) == ("2.5x", "2m")
        assert errors_of("alerts: {stale: {after: 0.5x}}")[0].startswith(
            "x.yaml:1: alerts.stale.after:"
        )

    @pytest.mark.parametrize(
        ("template", "region", "endpoint"),
        [
            (
                "trtc.tencentcloudapi.com",
                "ap-beijing",
                ("https", "trtc.tencentcloudapi.com"),
            ),
            (
                "https://trtc.intl.tencentcloudapi.com",
                "ap-beijing",
                ("https", "trtc.intl.tencentcloudapi.com"),
            ),
            ("http://127.0.0.1:8080", "ap-beijing", ("http", "127.0.0.1:8080")),
            ("http://localhost:80/", "ap-beijing", ("http", "localhost")),
            ("https://sim:443", "ap-beijing", ("https", "sim")),
            (
                "trtc.{region}.tencentcloudapi.com",
                "ap-mumbai",
                ("https", "trtc.ap-mumbai.tencentcloudapi.com"),
            ),
            ("http://[::1]:18080", "ap-beijing", ("http", "[::1]:18080")),
        ],
    )
    def test_endpoint_forms(self, template: str, region: str, endpoint: tuple[str, str]) -> None:
        # The config accepts exactly what the client parses, through the same parser.
        account = parse_config(f'accounts: {{a: {{endpoint: "{template}"}}}}').accounts["a"]
        parsed = Endpoint.parse(account.endpoint)
        assert (parsed.scheme, parsed.host(region)) == endpoint

    @pytest.mark.parametrize(
        "template",
        [
            "ftp://host",
            "https://host/path",
            "https://host?x=1",
            "https://u:p@host",
            "trtc.{zone}.x",
            "bad host",
            "http://host:99999",
            "",
        ],
    )
    def test_invalid_endpoints_are_rejected(self, template: str) -> None:
        with pytest.raises(ValueError, match="invalid endpoint"):
            Endpoint.parse(template)
        assert len(errors_of(f'accounts: {{a: {{endpoint: "{template}"}}}}')) == 1

    @pytest.mark.parametrize(
        ("listen", "host", "port"),
        [
            ("0.0.0.0:9877", "0.0.0.0", 9877),
            ("localhost:0", "localhost", 0),
            ("[::1]:80", "::1", 80),
        ],
    )
    def test_listen_is_host_and_port(self, listen: str, host: str, port: int) -> None:
        server = parse_config(f'server: {{listen: "{listen}"}}').server
        assert (server.host, server.port) == (host, port) == parse_listen(listen)

    @pytest.mark.parametrize(
        "listen", ["9877", ":9877", "host:", "host:70000", "host:http", "a b:1"]
    )
    def test_invalid_listen_addresses_are_rejected(self, listen: str) -> None:
        errors = errors_of(f'server: {{listen: "{listen}"}}')
        assert len(errors) == 1
        assert "invalid listen address" in errors[0]

    def test_task_fields_are_validated(self) -> None:
        config = parse_config(
            "tasks:\n  - {sdk_app_id: 1400000001, task_id: '-gk8_x.y~z+w=', region: ap-beijing, "
            "labels: {room: 42, customer: acme}, interval: 10s}\n"
        )
        task = config.tasks[0]
        assert (task.sdk_app_id, task.task_id, task.account) == (
            1400000001,
            "-gk8_x.y~z+w=",
            "default",
        )
        assert task.labels == {"room": "42", "customer": "acme"}
        assert task.interval == 10.0
        assert config.regions() == ["ap-beijing"]

    @pytest.mark.parametrize(
        ("task", "path"),
        [
            ("{sdk_app_id: 0, task_id: a, region: ap-beijing}", "tasks[0].sdk_app_id"),
            ("{sdk_app_id: '1', task_id: a, region: ap-beijing}", "tasks[0].sdk_app_id"),
            ("{sdk_app_id: 1, task_id: '', region: ap-beijing}", "tasks[0].task_id"),
            ("{sdk_app_id: 1, task_id: 'a b', region: ap-beijing}", "tasks[0].task_id"),
            ("{sdk_app_id: 1, task_id: 12, region: ap-beijing}", "tasks[0].task_id"),
            (f"{{sdk_app_id: 1, task_id: {'a' * 257}, region: ap-beijing}}", "tasks[0].task_id"),
            ("{sdk_app_id: 1, task_id: a, region: AP-BEIJING}", "tasks[0].region"),
            (
                "{sdk_app_id: 1, task_id: a, region: ap-beijing, labels: {0x: y}}",
                "tasks[0].labels.0x",
            ),
            ("{sdk_app_id: 1, task_id: a, region: ap-beijing, interval: 0s}", "tasks[0].interval"),
        ],
    )
    def test_invalid_tasks_are_rejected_at_the_offending_key(self, task: str, path: str) -> None:
        errors = errors_of(f"tasks:\n  - {task}\n")
        assert len(errors) == 1
        assert errors[0].startswith(f"x.yaml:2: {path}: ")

    def test_urls_must_be_http_without_credentials(self) -> None:
        errors = errors_of(
            """
            alerts:
              receivers:
                - {type: alertmanager, urls: ["http://am:9093", "am:9093"]}
                - {type: webhook, url: "https://user:pw@hook.example"}
                - {type: alertmanager, urls: []}
            """,
        )
        assert [e.split(": ")[0:2] for e in errors] == [
            ["x.yaml:3", "alerts.receivers[0].urls[1]"],
            ["x.yaml:4", "alerts.receivers[1].url"],
            ["x.yaml:5", "alerts.receivers[2].urls"],
        ]
        assert all("pw" not in e for e in errors)

    @pytest.mark.parametrize("path", ["callbacks", "/metrics", "/api/v1/cb", "/-/cb", "/a b", "/"])
    def test_callback_path_must_be_an_own_absolute_path(self, path: str) -> None:
        assert len(errors_of(f'callbacks: {{path: "{path}"}}')) == 1

    def test_logging_names_are_case_insensitive(self) -> None:
        config = parse_config("logging: {format: Console, level: DEBUG}")
        assert (config.logging.format, config.logging.level) == ("console", "debug")

    def test_the_model_is_frozen(self) -> None:
        config = parse_config("{}")
        with pytest.raises(pydantic.ValidationError):
            config.polling.interval = 1.0

    def test_summary_names_what_will_run_without_secrets(self) -> None:
        config = parse_config(
            f"""
server: {{api_token: {SECRET_KEY}x}}
accounts:
  prod: {{secret_key: {SECRET_KEY}, endpoint: "http://127.0.0.1:8080", rate_limit: 10}}
  intl: {{endpoint: "trtc.{{region}}.tencentcloudapi.com"}}
tasks:
  - {{sdk_app_id: 1, task_id: a, region: ap-mumbai, account: prod}}
  - {{sdk_app_id: 1, task_id: b, region: ap-beijing, account: intl}}
callbacks: {{key: {SECRET_KEY}y, account: prod, region: ap-shanghai}}
alerts:
  receivers:
    - {{type: webhook, url: "https://hooks.example/services/T0/B0/tok3n"}}
"""
        )
        summary = config.summary()
        assert SECRET_KEY not in summary
        assert "tok3n" not in summary
        assert "prod: endpoint http://127.0.0.1:8080, 10 requests per 1s" in summary
        assert "intl: endpoint trtc.{region}.tencentcloudapi.com, 20 requests per 1s" in summary
        assert "regions in use: ap-beijing, ap-mumbai, ap-shanghai" in summary
        assert "static tasks: 2" in summary
        assert "callbacks: on at /callbacks/trtc" in summary
        assert "webhook-0: webhook -> https://hooks.example" in summary
        assert "storage: sqlite" in summary
        assert SECRET_KEY not in repr(config)
        assert SECRET_KEY not in str(config.model_dump())


class TestSecretSource:
    def test_env_source_reads_the_variable(self) -> None:
        source = SecretSource.from_env("MY_KEY", "accounts.a.secret_key")
        assert source.resolve({"MY_KEY": SECRET_KEY}) == SECRET_KEY
        assert source.resolve({}) is None
        assert source.resolve({"MY_KEY": ""}) is None

    def test_env_source_reads_the_process_environment_by_default(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRTC_TEST_SECRET_XYZ", SECRET_KEY)
        assert SecretSource.from_env("TRTC_TEST_SECRET_XYZ").resolve() == SECRET_KEY

    def test_file_source_strips_the_trailing_newline_only(self, tmp_path: Path) -> None:
        path = tmp_path / "key"
        path.write_text(f" {SECRET_KEY}\r\n")
        assert SecretSource.from_file(path).resolve() == f" {SECRET_KEY}"
        assert SecretSource.from_file(tmp_path / "missing").resolve() is None

    def test_unusable_files_are_errors_naming_the_file(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty"
        empty.write_text("\n")
        with pytest.raises(SecretError, match=f"^k: file {empty} is empty$"):
            SecretSource.from_file(empty, "k").resolve()
        with pytest.raises(SecretError, match=f"^k: file {tmp_path} cannot be read"):
            SecretSource.from_file(tmp_path, "k").resolve()
        binary = tmp_path / "bin"
        binary.write_bytes(b"\xff\xfe")
        with pytest.raises(SecretError, match="is not valid UTF-8"):
            SecretSource.from_file(binary, "k").resolve()

    def test_literal_source_resolves_with_a_warning_that_names_the_key_only(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        source = SecretSource.from_literal(SECRET_KEY, "accounts.a.secret_key")
        with caplog.at_level(logging.WARNING, logger="monitor.secrets"):
            assert source.resolve() == SECRET_KEY
        assert len(caplog.records) == 1
        assert "accounts.a.secret_key" in caplog.records[0].getMessage()
        assert SECRET_KEY not in caplog.text
        assert SECRET_KEY not in repr(source)

    def test_require_names_where_it_looked(self, tmp_path: Path) -> None:
        with pytest.raises(SecretError) as info:
            SecretSource.from_env("TENCENTCLOUD_SECRET_KEY", "accounts.default.secret_key").require(
                {}
            )
        assert str(info.value) == (
            "accounts.default.secret_key: environment variable TENCENTCLOUD_SECRET_KEY is not set"
        )
        with pytest.raises(SecretError, match=f"^x: file {tmp_path / 'k'} does not exist$"):
            SecretSource.from_file(tmp_path / "k", "x").require()

    def test_secret_never_shows_its_value(self) -> None:
        secret = Secret(SECRET_KEY)
        assert secret.get() == SECRET_KEY
        assert repr(secret) == str(secret) == f"{secret}" == MASK
        assert SECRET_KEY not in repr([secret, {"k": secret}])
        assert secret == Secret(SECRET_KEY)
        assert secret != Secret(SECRET_KEY + "x")

    def test_secret_refuses_to_be_pickled(self) -> None:
        import pickle

        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(Secret(SECRET_KEY))

    def test_credentials_repr_hides_the_key_and_the_token(self) -> None:
        credentials = Credentials(SECRET_ID, SECRET_KEY, "tok-0123456789")
        text = repr(credentials) + str(credentials) + f"{credentials}"
        assert SECRET_KEY not in text
        assert "tok-0123456789" not in text
        assert SECRET_ID in repr(credentials)
        assert repr(Credentials(SECRET_ID, SECRET_KEY)).endswith("token=None)")
        assert credentials.secret_values() == [SECRET_KEY, "tok-0123456789"]

    @pytest.mark.parametrize(
        "text",
        [
            '{"Authorization": "Bearer abc", "X-Team": "ops"}',
            "# comment\nAuthorization: Bearer abc\n\nX-Team:ops\n",
        ],
    )
    def test_headers_are_json_or_name_value_lines(self, text: str) -> None:
        assert parse_headers(text, "h") == {"Authorization": "Bearer abc", "X-Team": "ops"}

    @pytest.mark.parametrize(
        "text",
        ["Bearer s3cr3t-value", "{not json", '["a"]', '{"a": 1}', "Bad Name: s3cr3t-value", ""],
    )
    def test_malformed_headers_are_rejected_without_echoing_them(self, text: str) -> None:
        with pytest.raises(SecretError) as info:
            parse_headers(text, "alerts.receivers[0].headers: file /h")
        assert str(info.value).startswith("alerts.receivers[0].headers: file /h: ")
        assert "s3cr3t" not in str(info.value)


class TestResolveSecrets:
    CONFIG = """
server:
  api_token_file: {token_file}
accounts:
  default: {{credentials: static}}
  prod:
    secret_id: {secret_id}
    secret_key_env: PROD_KEY
    token_file: {token_file}
callbacks:
  key_env: CB_KEY
alerts:
  receivers:
    - type: webhook
      url: "https://hook.example/x"
      headers_env: HOOK_HEADERS
"""

    def config(self, tmp_path: Path) -> Config:
        token_file = tmp_path / "token"
        token_file.write_text("api-token-0123\n")
        text = self.CONFIG.lstrip("\n").format(token_file=token_file, secret_id=SECRET_ID)
        return parse_config(text, "m.yaml")

    def test_every_secret_is_read_from_its_source(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        environ = {
            "TENCENTCLOUD_SECRET_ID": "AKIDdefault",
            "TENCENTCLOUD_SECRET_KEY": "default-key-0123",
            "PROD_KEY": SECRET_KEY,
            "CB_KEY": "callback-key-0123",
            "HOOK_HEADERS": "Authorization: Bearer hook-0123",
        }
        with caplog.at_level(logging.WARNING, logger="monitor.secrets"):
            secrets = resolve_secrets(self.config(tmp_path), environ)
        assert secrets.accounts == {
            "default": Credentials("AKIDdefault", "default-key-0123", None),
            "prod": Credentials(SECRET_ID, SECRET_KEY, "api-token-0123"),
        }
        assert secrets.api_token == Secret("api-token-0123")
        assert secrets.callback_key == Secret("callback-key-0123")
        assert secrets.webhook_headers == {
            "webhook-0": {"Authorization": Secret("Bearer hook-0123")}
        }
        assert secrets.values() == secrets.secret_values()
        assert sorted(secrets.secret_values()) == sorted(
            [
                "default-key-0123",
                SECRET_KEY,
                "api-token-0123",
                "api-token-0123",
                "callback-key-0123",
                "Bearer hook-0123",
            ]
        )
        # the literal SecretId is accepted, with a warning naming its key
        assert [r.getMessage() for r in caplog.records if "literal" in r.getMessage()] == [
            "literal secret in the configuration file at accounts.prod.secret_id; "
            "prefer an environment variable or a file"
        ]
        for text in (repr(secrets), str(secrets)):
            assert SECRET_KEY not in text
            assert "callback-key-0123" not in text
            assert "hook-0123" not in text

    def test_missing_secrets_are_all_reported_by_key_path_and_source(self, tmp_path: Path) -> None:
        config = self.config(tmp_path)
        environ = {"PROD_KEY": SECRET_KEY, "HOOK_HEADERS": "not a header line"}
        with pytest.raises(ConfigError) as info:
            resolve_secrets(config, environ)
        assert info.value.errors == [
            "m.yaml:4: accounts.default.secret_id: "
            "environment variable TENCENTCLOUD_SECRET_ID is not set",
            "m.yaml:4: accounts.default.secret_key: "
            "environment variable TENCENTCLOUD_SECRET_KEY is not set",
            "m.yaml:10: callbacks.key: environment variable CB_KEY is not set",
            "m.yaml:15: alerts.receivers[0].headers: environment variable HOOK_HEADERS: "
            "line 1 is not of the form 'Name: value'",
        ]
        assert SECRET_KEY not in str(info.value)

    def test_an_absent_session_token_means_none(self) -> None:
        config = parse_config("accounts: {a: {token_env: TOKEN}}")
        environ = {"TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "k-0123"}
        assert resolve_secrets(config, environ).accounts["a"].token is None
        assert resolve_secrets(config, {**environ, "TOKEN": "t-0123"}).accounts["a"].token == (
            "t-0123"
        )

    def test_check_config_warns_about_missing_and_literal_secrets_but_passes(
        self, tmp_path: Path
    ) -> None:
        path = write(
            tmp_path,
            f"""
            accounts:
              default:
                secret_key: {SECRET_KEY}
            """,
        )
        code, text = check_config(path, environ={}, syntax_only=True)
        assert code == 0
        warnings = [line for line in text.splitlines() if line.startswith("warning:")]
        assert warnings == [
            f"warning: {path}:3: accounts.default.secret_key: literal secret in the "
            "configuration file; prefer secret_key_env or secret_key_file",
            f"warning: {path}:2: accounts.default.secret_id: "
            "environment variable TENCENTCLOUD_SECRET_ID is not set",
        ]
        assert SECRET_KEY not in text

    def test_check_config_warns_about_malformed_webhook_headers(self, tmp_path: Path) -> None:
        headers = tmp_path / "headers"
        headers.write_text("Authorization Bearer hook-s3cr3t\n")
        path = write(
            tmp_path,
            f"""
            alerts:
              receivers:
                - {{type: webhook, url: "https://h.example", headers_file: {headers}}}
            """,
        )
        code, text = check_config(path, environ={}, syntax_only=True)
        assert code == 0
        assert (
            f"warning: {path}:3: alerts.receivers[0].headers: file {headers}: "
            "line 1 is not of the form 'Name: value'"
        ) in text.splitlines()
        assert "s3cr3t" not in text
