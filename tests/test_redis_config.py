"""Configuration of the Redis backend and of the cluster: keys, secrets, errors."""

from __future__ import annotations

import textwrap

import pytest

from monitor.config import ConfigError, parse_config, resolve_secrets
from monitor.secrets import Secret

REDIS_URL = "redis://:pw-Hq81xVt0@redis.internal:6379/2"
ENV = {
    "TENCENTCLOUD_SECRET_ID": "AKIDexample",
    "TENCENTCLOUD_SECRET_KEY": "sk-example",
}


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).lstrip("\n"), "x.yaml")
    return info.value.errors


class TestStorageRedis:
    def test_redis_is_accepted_with_spec_defaults(self) -> None:
        config = parse_config("storage: {backend: redis}\n")
        assert config.storage.backend == "redis"
        assert config.storage.redis.key_prefix == "trtc-monitor:"
        source = config.storage.redis.url_source()
        assert (source.kind, source.ref) == ("env", "TRTC_MONITOR_REDIS_URL")
        assert (config.cluster.replica_id, config.cluster.heartbeat) == ("", 2.0)
        assert config.cluster.member_timeout == 10.0

    def test_the_url_is_a_secret_resolved_and_redacted_only_with_redis(self) -> None:
        text = "storage:\n  backend: redis\n  redis: {url_env: MY_REDIS, key_prefix: 'a:'}\n"
        secrets = resolve_secrets(parse_config(text), {**ENV, "MY_REDIS": REDIS_URL})
        assert secrets.redis_url == Secret(REDIS_URL)
        assert REDIS_URL in secrets.secret_values()
        assert "pw-Hq81xVt0" in secrets.secret_values()  # the password on its own

        sqlite = parse_config("storage:\n  redis: {url_env: MY_REDIS}\n")
        assert resolve_secrets(sqlite, ENV).redis_url is None

    def test_a_missing_url_names_the_key_and_the_variable_not_a_value(self) -> None:
        config = parse_config("storage: {backend: redis}\n")
        with pytest.raises(ConfigError) as info:
            resolve_secrets(config, ENV)
        (error,) = info.value.errors
        assert "storage.redis.url" in error
        assert "TRTC_MONITOR_REDIS_URL" in error

    def test_a_literal_url_is_accepted_with_a_warning_and_never_shown(self) -> None:
        config = parse_config(
            f"storage:\n  backend: redis\n  redis:\n    url: '{REDIS_URL}'\n", "x.yaml"
        )
        (warning,) = config.warnings()
        assert warning.startswith("x.yaml:4: storage.redis.url: literal secret")
        assert REDIS_URL not in config.summary()
        assert "pw-Hq81xVt0" not in repr(config)
        assert "storage: redis URL from literal value" in config.summary()

    def test_two_url_sources_are_refused(self) -> None:
        errors = errors_of(
            """
            storage:
              backend: redis
              redis:
                url_env: A
                url_file: /run/secrets/redis
            """
        )
        assert len(errors) == 1
        assert "x.yaml:5: storage.redis.url_file: set only one of" in errors[0]

    @pytest.mark.parametrize("prefix", ["", "has space:", "x" * 65, "é:"])
    def test_a_bad_key_prefix_is_refused_with_its_line(self, prefix: str) -> None:
        errors = errors_of(f"storage:\n  redis:\n    key_prefix: '{prefix}'\n")
        assert len(errors) == 1
        assert errors[0].startswith("x.yaml:3: storage.redis.key_prefix: ")

    def test_an_unknown_key_under_redis_is_an_error(self) -> None:
        errors = errors_of("storage:\n  redis:\n    urll: x\n")
        assert len(errors) == 1
        assert errors[0].startswith("x.yaml:3: storage.redis.urll")


class TestCluster:
    def test_durations_are_read_in_prometheus_syntax(self) -> None:
        config = parse_config(
            "cluster: {replica_id: monitor-a, heartbeat: 500ms, member_timeout: 3s}\n"
        )
        assert config.cluster.replica_id == "monitor-a"
        assert (config.cluster.heartbeat, config.cluster.member_timeout) == (0.5, 3.0)

    def test_a_timeout_shorter_than_two_heartbeats_is_refused(self) -> None:
        errors = errors_of("cluster:\n  heartbeat: 5s\n  member_timeout: 9s\n")
        assert len(errors) == 1
        assert errors[0].startswith("x.yaml:3: cluster.member_timeout: ")
        assert "twice the heartbeat" in errors[0]

    def test_the_summary_shows_the_cluster_with_redis_only(self) -> None:
        config = parse_config("storage: {backend: redis}\ncluster: {replica_id: m-1}\n")
        assert "cluster: replica m-1, heartbeat 2s, member timeout 10s" in config.summary()
        assert "cluster:" not in parse_config("cluster: {replica_id: m-1}\n").summary()

    def test_a_zero_heartbeat_is_refused(self) -> None:
        errors = errors_of("cluster: {heartbeat: 0s}\n")
        assert len(errors) == 1
        assert "cluster.heartbeat" in errors[0]
