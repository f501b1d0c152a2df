"""Secrets: where one is read from (variable, file, literal), how it keeps itself out of
messages, and reading every secret a configuration names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.config import Config, ConfigError, parse_config, resolve_secrets
from monitor.secrets import MASK, Credentials, Secret, SecretError, SecretSource, parse_headers
from tests.config_support import SECRET_ID, SECRET_KEY


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
