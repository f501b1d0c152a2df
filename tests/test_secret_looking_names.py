"""A secret typed where a variable name goes is reported without echoing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, check_config, load_config, resolve_secrets


class TestSecretLookingNames:
    SECRET = "Zq8vR2mX4kLp9TnW3bYc7HdF6sJa"

    def test_a_secret_typed_where_a_variable_name_goes_is_reported_without_echoing_it(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n  default:\n"
            f"    secret_id_env: TEST_SECRET_ID\n    secret_key_env: {self.SECRET}\n"
        )
        code, text = check_config(path, environ={"TEST_SECRET_ID": "AKIDx"}, syntax_only=True)
        assert code == 0
        assert self.SECRET not in text
        assert "secret_key_env" in text
        assert "looks like a secret" in text
        assert self.SECRET[:4] in text
        config = load_config(path)
        with pytest.raises(ConfigError) as info:
            resolve_secrets(config, environ={"TEST_SECRET_ID": "AKIDx"})
        assert self.SECRET not in str(info.value)
        assert "looks like a secret" in str(info.value)

    def test_ordinary_names_are_shown_in_full(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n  default:\n"
            "    secret_id_env: TEST_SECRET_ID\n    secret_key_env: TENCENTCLOUD_SECRET_KEY_PROD\n"
        )
        code, text = check_config(path, environ={"TEST_SECRET_ID": "AKIDx"}, syntax_only=True)
        assert code == 0
        assert "TENCENTCLOUD_SECRET_KEY_PROD" in text
        assert "looks like a secret" not in text
