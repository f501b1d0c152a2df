"""``check-config`` on a file whose secrets this machine lacks: warnings, never failures."""

from __future__ import annotations

from pathlib import Path

from monitor.config import check_config
from tests.config_support import SECRET_KEY, write


class TestCheckConfigWarnings:
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
