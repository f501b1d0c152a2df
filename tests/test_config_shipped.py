"""The configuration files the project ships: they load, pass check-config, and the
example documents every key with its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import Config, check_config, load_config, resolve_secrets
from monitor.models import Status
from monitor.secrets import Credentials, Secret
from tests.config_support import DEMO, EXAMPLE, SECRET_ID, SECRET_KEY, model_fields


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
