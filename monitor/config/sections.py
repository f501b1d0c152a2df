"""Sections ``server``, ``storage``, ``cluster``, ``polling``, ``callbacks``, ``metrics``
and ``logging``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from monitor.config.errors import LocatedErrors
from monitor.config.sources import SecretKeys, secret_source, secret_source_or_env
from monitor.config.types import (
    Duration,
    EnvName,
    Fraction,
    LabelName,
    Model,
    PositiveInt,
    Region,
    check_external_url,
    check_listen,
    parse_listen,
)
from monitor.durations import format_duration
from monitor.models import FINAL_STATUSES, Status
from monitor.secrets import Secret, SecretSource
from monitor.taskspec import MAX_SDK_APP_ID
from monitor.trtc.errors import DEFAULT_ENDED_CODES

# Paths the HTTP server already serves; a callback path there would shadow them.
_RESERVED_PATH_PREFIXES = ("/metrics", "/-/", "/api/")


class ServerConfig(SecretKeys):
    SECRET_BASES = ("api_token",)

    listen: Annotated[str, AfterValidator(check_listen)] = "0.0.0.0:9877"
    api_token_file: Path | None = None
    api_token_env: EnvName | None = None
    api_token: Secret | None = None
    max_body_bytes: PositiveInt = 1024 * 1024
    # How people reach this monitor: the base of links in alert messages ("" = no links).
    external_url: Annotated[str, AfterValidator(check_external_url)] = ""
    # Prometheus exporters' web configuration file (TLS, basic auth, headers); the run flag
    # --web.config.file wins over it.
    web_config_file: Path | None = None

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    def api_token_source(self) -> SecretSource | None:
        return secret_source(self, "api_token", "server.api_token")

    def resolve_api_token(self, environ: Mapping[str, str] | None = None) -> Secret | None:
        """The API token, None when none is configured; SecretError when configured but absent."""
        source = self.api_token_source()
        return None if source is None else source.require(environ)


DEFAULT_REDIS_URL_ENV = "TRTC_MONITOR_REDIS_URL"
# Keys of one deployment start with the prefix; a printable, space-free word keeps them greppable.
_KEY_PREFIX_RE = re.compile(r"[!-~]{1,64}")


def _check_key_prefix(value: str) -> str:
    if not _KEY_PREFIX_RE.fullmatch(value):
        raise ValueError(
            f"invalid key prefix {value!r}: 1 to 64 printable ASCII characters without spaces"
        )
    return value


class RedisStorageConfig(SecretKeys):
    """Where the Redis shared by the replicas is. The URL may hold a password: a secret."""

    SECRET_BASES = ("url",)

    url_env: EnvName | None = None
    url_file: Path | None = None
    url: Secret | None = None
    key_prefix: Annotated[str, AfterValidator(_check_key_prefix)] = "trtc-monitor:"

    def url_source(self) -> SecretSource:
        return secret_source_or_env(self, "url", "storage.redis.url", DEFAULT_REDIS_URL_ENV)


class StorageConfig(Model):
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: Path = Path("./data/trtc-monitor.db")
    retention: Duration = 24 * 3600.0
    redis: RedisStorageConfig = RedisStorageConfig()


class ClusterConfig(Model):
    """Replicas sharing one Redis; ignored with the sqlite backend."""

    replica_id: Annotated[str, Field(max_length=128)] = ""  # default: host name and process id
    heartbeat: Duration = 2.0
    member_timeout: Duration = 10.0

    @model_validator(mode="after")
    def _timeout_outlasts_heartbeats(self) -> Self:
        # A replica must miss a couple of heartbeats before it is declared dead, or one slow
        # renewal would move its tasks away and back.
        if self.member_timeout < 2 * self.heartbeat:
            raise LocatedErrors(
                [
                    (
                        ("member_timeout",),
                        f"member_timeout ({format_duration(self.member_timeout)}) must be at "
                        f"least twice the heartbeat ({format_duration(self.heartbeat)})",
                    )
                ]
            )
        return self


def _check_interval_statuses(value: object) -> object:
    if not isinstance(value, dict):
        return value
    pollable = [s.value for s in Status if s not in FINAL_STATUSES]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for key in value:
        if key in pollable:
            continue
        if key in {s.value for s in FINAL_STATUSES}:
            problems.append(((str(key),), f"{key} tasks are not polled"))
        else:
            problems.append(((str(key),), f'unknown status "{key}" (one of {", ".join(pollable)})'))
    if problems:
        raise LocatedErrors(problems)
    return value


class PollingConfig(Model):
    interval: Duration = 15.0
    interval_by_status: Annotated[
        dict[Status, Duration], BeforeValidator(_check_interval_statuses)
    ] = Field(default_factory=dict)
    jitter: Fraction = 0.1
    timeout: Duration = 6.0
    ended_codes: tuple[Annotated[str, Field(min_length=1)], ...] = DEFAULT_ENDED_CODES
    resource_expired_hours: Annotated[float, Field(gt=0)] = 72.0
    max_in_flight: PositiveInt = 64

    @field_validator("jitter")
    @classmethod
    def _jitter_range(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("jitter must be at least 0% and below 100%")
        return value

    def interval_for(self, status: Status, task_interval: float | None = None) -> float:
        """Seconds between polls: the task's own interval, else by status, else the default."""
        if task_interval is not None:
            return task_interval
        return self.interval_by_status.get(status, self.interval)


def _check_callback_app(value: object) -> int:
    """An application id as a key of ``callbacks.apps`` (YAML reads it as a number)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SDK_APP_ID:
        raise ValueError(f"{value!r} is not an SdkAppId (a positive integer)")
    return value


CallbackApp = Annotated[int, BeforeValidator(_check_callback_app)]


class CallbackAppConfig(SecretKeys):
    """The callback key of one TRTC application (each has its own in the console)."""

    SECRET_BASES = ("key",)

    key_env: EnvName | None = None
    key_file: Path | None = None
    key: Secret | None = None

    def key_source(self, sdk_app_id: int) -> SecretSource | None:
        return secret_source(self, "key", f"callbacks.apps.{sdk_app_id}.key")


class CallbacksConfig(SecretKeys):
    SECRET_BASES = ("key", "tuikit_token")

    path: str = "/callbacks/trtc"
    key_env: EnvName | None = None
    key_file: Path | None = None
    key: Secret | None = None
    # The Chat webhook authentication token TUIKit envelopes are signed with (their Sign and
    # RequestTime in the query string); without one, every TUIKit envelope is refused.
    tuikit_token_env: EnvName | None = None
    tuikit_token_file: Path | None = None
    tuikit_token: Secret | None = None
    auto_register: bool = True
    account: str = "default"
    region: Region = "ap-guangzhou"
    # A signed callback sent longer ago than this is a replay (the signature covers no time).
    max_age: Duration = 600.0
    # How far ahead of our clock a callback's times may be (the sender's clock may run fast).
    max_skew: Duration = 300.0
    # Per-application keys; when set, only these applications' callbacks are taken. An entry
    # without a key of its own is checked with the single key above.
    apps: dict[CallbackApp, CallbackAppConfig] = Field(default_factory=dict)
    # A listener of its own for the callback path (only it: everything else there is 404),
    # and its web configuration file (TLS only: TRTC cannot send basic auth).
    listen: Annotated[str, AfterValidator(check_listen)] | None = None
    web_config_file: Path | None = None

    @field_validator("path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError(f'invalid path "{value}" (e.g. /callbacks/trtc)')
        if value == "/metrics" or value.startswith(_RESERVED_PATH_PREFIXES):
            raise ValueError(f'path "{value}" is served by the monitor itself')
        return value

    @model_validator(mode="after")
    def _keyless_apps(self) -> Self:
        if self.key_source() is None:
            keyless = [app for app, conf in self.apps.items() if conf.key_source(app) is None]
            if keyless:
                raise LocatedErrors(
                    [
                        (
                            ("apps", keyless[0]),
                            "names no key (key_env, key_file or key) and callbacks has no "
                            "key of its own to fall back on",
                        )
                    ]
                )
        return self

    @model_validator(mode="after")
    def _own_listener(self) -> Self:
        if self.web_config_file is not None and self.listen is None:
            raise LocatedErrors(
                [(("web_config_file",), "needs callbacks.listen (the listener it configures)")]
            )
        if self.listen is not None and not self.enabled:
            raise LocatedErrors(
                [(("listen",), "callbacks are off (no key is configured): nothing to serve")]
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.key_source() is not None or bool(self.apps)

    def key_source(self) -> SecretSource | None:
        return secret_source(self, "key", "callbacks.key")

    def tuikit_token_source(self) -> SecretSource | None:
        return secret_source(self, "tuikit_token", "callbacks.tuikit_token")


class MetricsConfig(Model):
    per_task: bool = True
    labels: tuple[LabelName, ...] = ()


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class LoggingConfig(Model):
    format: Annotated[Literal["json", "console"], BeforeValidator(_lower)] = "json"
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
