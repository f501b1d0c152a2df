"""The values the configuration takes: durations, fractions, statuses, ``stale.after``,
endpoints, listen addresses, tasks, URLs, paths and names."""

from __future__ import annotations

import pydantic
import pytest

from monitor.config import parse_config, parse_listen
from monitor.models import Status
from monitor.trtc.client import Endpoint
from tests.config_support import errors_of


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
