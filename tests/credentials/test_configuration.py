"""The accounts' credentials settings in the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, check_config, parse_config
from tests.credentials.credentials_support import OTHER_ROLE

# ---------------------------------------------------------------------------------------------
# configuration, the alert condition, redaction, the command


class TestConfiguration:
    def test_keys_of_section_4_are_accepted_with_their_defaults(self) -> None:
        config = parse_config("accounts: {a: {}}")
        a = config.accounts["a"]
        assert (a.credentials, a.profile, a.role_arn, a.role_session_name) == (
            "auto",
            "default",
            "",
            "trtc-monitor",
        )
        assert a.role_duration == 7200.0
        assert a.sts_endpoint == "sts.tencentcloudapi.com"
        assert a.metadata_endpoint == "http://metadata.tencentyun.com"
        assert config.alerts.credentials.before == 900.0
        assert not a.uses_static  # no keys: the chain looks at run time

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("credentials: vault", "credentials"),
            ("role_arn: arn:aws:iam::1:role/x", "invalid role_arn"),
            ("role_session_name: 'a b'", "invalid role_session_name"),
            ("role_duration: 1m", "between 15m and 12h"),
            ("metadata_endpoint: http://h/latest", "just scheme://host"),
            ("sts_endpoint: 'ftp://sts'", "scheme must be http or https"),
            ("{credentials: oidc, secret_key_env: K}", "only used with credentials static or"),
        ],
    )
    def test_invalid_settings_are_errors_naming_the_key(self, text: str, message: str) -> None:
        body = text if text.startswith("{") else "{" + text + "}"
        with pytest.raises(ConfigError) as info:
            parse_config(f"accounts:\n  a: {body}\n", "m.yaml")
        assert message in "\n".join(info.value.errors)
        assert all(e.startswith("m.yaml:2:") for e in info.value.errors)

    def test_check_config_explains_the_chain(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n  a: {}\n  b: {credentials: oidc, role_arn: " + OTHER_ROLE + "}\n"
            "  c: {secret_key_env: C_KEY, secret_id_env: C_ID}\n"
        )
        code, text = check_config(path, environ={}, syntax_only=True)
        assert code == 0, text
        lines = text.splitlines()
        a = lines[lines.index(next(x for x in lines if x.startswith("  a:"))) + 1]
        assert a == (
            "    credentials: auto: first present of env (TENCENTCLOUD_SECRET_ID/"
            "TENCENTCLOUD_SECRET_KEY), oidc (TKE_ROLE_ARN and TKE_WEB_IDENTITY_TOKEN_FILE via "
            "STS), profile [default] of ~/.tencentcloud/credentials or "
            "/etc/tencentcloud/credentials, cvm_role (metadata http://metadata.tencentyun.com)"
        )
        assert f"then assumes {OTHER_ROLE} for 2h via STS sts.tencentcloudapi.com" in text
        assert "static (key from environment variable C_KEY)" in text
        # only the static account's keys are looked for now; the others at run time
        warnings = [x for x in lines if x.startswith("warning:")]
        assert len(warnings) == 2
        assert all("accounts.c." in w for w in warnings)
