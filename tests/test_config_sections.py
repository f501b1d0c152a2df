"""The sections of the configuration: their defaults, the receivers' names, and the
``check-config`` summary of what will run."""

from __future__ import annotations

from pathlib import Path

from monitor.config import AlertmanagerReceiver, Config, StaleAfter, WebhookReceiver, parse_config
from monitor.secrets import SecretSource
from monitor.trtc.errors import DEFAULT_ENDED_CODES
from tests.config_support import SECRET_KEY, errors_of


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
        # The international site's host: the site an account is on unless it says otherwise.
        assert account.site == "international"
        assert account.endpoint == "trtc.intl.tencentcloudapi.com"
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


class TestSummary:
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
