"""The YAML configuration (SPEC section 4): models, loading with line-numbered errors,
secret resolution and the ``check-config`` report.

Loading is pure apart from reading the one file; secrets are read only by
``resolve_secrets``, so a configuration can be validated on a machine that lacks them.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import string
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from monitor.durations import SYNTAX_HINT, format_duration, parse_duration, parse_percent
from monitor.models import FINAL_STATUSES, REGIONS, Status, TaskKey
from monitor.secrets import (
    Credentials,
    Secret,
    SecretError,
    SecretSource,
    looks_like_secret,
    parse_headers,
    shown_ref,
)
from monitor.taskspec import (
    LABEL_NAME_RE,
    MAX_SDK_APP_ID,
    RESERVED_LABELS,
    LabelError,
    TaskSpec,
    unknown_account,
)
from monitor.trtc.client import HOST_RE, Endpoint
from monitor.trtc.errors import DEFAULT_ENDED_CODES

# Names of environment variables, not values.
DEFAULT_SECRET_ID_ENV = "TENCENTCLOUD_SECRET_ID"  # noqa: S105
DEFAULT_SECRET_KEY_ENV = "TENCENTCLOUD_SECRET_KEY"  # noqa: S105
DEFAULT_TOKEN_ENV = "TENCENTCLOUD_SESSION_TOKEN"  # noqa: S105
DEFAULT_ENDPOINT = "trtc.tencentcloudapi.com"

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Paths the HTTP server already serves; a callback path there would shadow them.
_RESERVED_PATH_PREFIXES = ("/metrics", "/-/", "/api/")


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _LocatedErrors(ValueError):
    """Problems found by a validator that knows better than pydantic where they are.

    ``problems`` holds (location relative to the validated value, message) pairs.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------------
# Scalar types


def _seconds(value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} ({SYNTAX_HINT})")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            limit = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"invalid duration {value!r} (seconds must be {limit})")
        return float(value)
    if isinstance(value, str):
        return parse_duration(value, allow_zero=allow_zero)
    raise ValueError(f"invalid duration ({SYNTAX_HINT})")


def _positive_seconds(value: object) -> float:
    return _seconds(value, allow_zero=False)


# A duration in Prometheus syntax or a plain number of seconds, stored as float seconds.
Duration = Annotated[float, BeforeValidator(_positive_seconds)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]


def _fraction(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError("invalid percentage (write it like 10% or 0.1)")
    return parse_percent(value)


Fraction = Annotated[float, BeforeValidator(_fraction)]


def _check_env_name(value: str) -> str:
    if not ENV_NAME_RE.fullmatch(value):
        raise ValueError(f'invalid environment variable name "{shown_ref(value)}"')
    return value


EnvName = Annotated[str, AfterValidator(_check_env_name)]


def _check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f'invalid name "{value}" (letters, digits, "_", "." and "-", at most 64 characters)'
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]


def _check_label_name(value: str) -> str:
    if not LABEL_NAME_RE.fullmatch(value) or value.startswith("__"):
        raise ValueError(
            f'invalid label name "{value}" (Prometheus label names match '
            "[a-zA-Z_][a-zA-Z0-9_]* and must not start with __)"
        )
    if value in RESERVED_LABELS:
        raise ValueError(
            f'label name "{value}" is reserved (the monitor sets '
            f"{', '.join(sorted(RESERVED_LABELS))} itself)"
        )
    return value


LabelName = Annotated[str, AfterValidator(_check_label_name)]


def _check_severity(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value):
        raise ValueError(f'invalid severity "{value}" (e.g. critical, warning, info)')
    return value


Severity = Annotated[str, AfterValidator(_check_severity)]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'invalid URL "{value}" (expected http://host[:port][/path])')
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL would end up in logs and summaries; headers are the secret path.
        raise ValueError("credentials in URLs are not supported (use headers_file/headers_env)")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f'invalid port in URL "{value}"') from None
    return value


HttpURL = Annotated[str, AfterValidator(_check_http_url)]


def _check_external_url(value: str) -> str:
    return _check_http_url(value) if value else value


def _check_region(value: str) -> str:
    if value not in REGIONS:
        raise ValueError(f'unknown region "{value}" (one of {", ".join(REGIONS)})')
    return value


Region = Annotated[str, AfterValidator(_check_region)]


@dataclass(frozen=True, slots=True)
class StaleAfter:
    """``stale.after``: a multiple of the task's interval (``3x``) or a fixed duration."""

    multiple: float | None = None
    duration: float | None = None

    def seconds(self, interval: float) -> float:
        if self.multiple is not None:
            return self.multiple * interval
        assert self.duration is not None
        return self.duration

    def __str__(self) -> str:
        if self.multiple is not None:
            return f"{self.multiple:g}x"
        assert self.duration is not None
        return format_duration(self.duration)

    @classmethod
    def parse(cls, value: object) -> StaleAfter:
        if isinstance(value, StaleAfter):
            return value
        if isinstance(value, str) and (m := re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)x\s*", value)):
            multiple = float(m[1])
            if multiple < 1:
                raise ValueError(
                    f'"{value}" would mark tasks stale before their next poll (use 1x or more)'
                )
            return cls(multiple=multiple)
        try:
            return cls(duration=_positive_seconds(value))
        except ValueError:
            raise ValueError(
                f"invalid value {value!r} (a multiple of the task's interval such as 3x, "
                f"or a duration: {SYNTAX_HINT})"
            ) from None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.to_string_ser_schema()
        )


def _check_endpoint(value: str) -> str:
    Endpoint.parse(value)  # the very parser the client signs with
    return value


def parse_listen(value: str) -> tuple[str, int]:
    """(host, port) from ``host:port`` (``[::1]:9877`` for IPv6). Raises ValueError."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = bool(host) and all(c in "0123456789abcdefABCDEF:." for c in host)
    else:
        valid_host = bool(HOST_RE.fullmatch(host))
    if not sep or not valid_host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f'invalid listen address "{value}" (expected host:port, e.g. 0.0.0.0:9877)'
        )
    return host, int(port_text)


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


# ---------------------------------------------------------------------------------------------
# Sections


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_source(model: BaseModel, base: str) -> None:
    """At most one of ``{base}_env``, ``{base}_file`` and ``{base}`` may be set."""
    names = [f"{base}_env", f"{base}_file", base]
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) > 1:
        raise _LocatedErrors(
            [((given[1],), f"set only one of {', '.join(names)} (also set: {given[0]})")]
        )


def _field_used(model: BaseModel, base: str) -> str:
    """Which of the source keys is set (``base`` itself when none is)."""
    for name in (f"{base}_env", f"{base}_file", base):
        if getattr(model, name) is not None:
            return name
    return base


def _secret_source(
    model: BaseModel, base: str, key: str, default_env: str | None = None
) -> SecretSource | None:
    env, file, literal = (getattr(model, n) for n in (f"{base}_env", f"{base}_file", base))
    if env is not None:
        return SecretSource.from_env(env, key)
    if file is not None:
        return SecretSource.from_file(file, key)
    if literal is not None:
        return SecretSource.from_literal(literal, key)
    return SecretSource.from_env(default_env, key) if default_env else None


class ServerConfig(_Model):
    listen: Annotated[str, AfterValidator(_check_listen)] = "0.0.0.0:9877"
    api_token_file: Path | None = None
    api_token_env: EnvName | None = None
    api_token: Secret | None = None
    max_body_bytes: PositiveInt = 1024 * 1024
    # How people reach this monitor: the base of links in alert messages ("" = no links).
    external_url: Annotated[str, AfterValidator(_check_external_url)] = ""
    # Prometheus exporters' web configuration file (TLS, basic auth, headers); the run flag
    # --web.config.file wins over it.
    web_config_file: Path | None = None

    @model_validator(mode="after")
    def _single_token_source(self) -> Self:
        _one_source(self, "api_token")
        return self

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    def api_token_source(self) -> SecretSource | None:
        return _secret_source(self, "api_token", "server.api_token")

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


class RedisStorageConfig(_Model):
    """Where the shared Redis is (SPEC section 13). The URL may hold a password: a secret."""

    url_env: EnvName | None = None
    url_file: Path | None = None
    url: Secret | None = None
    key_prefix: Annotated[str, AfterValidator(_check_key_prefix)] = "trtc-monitor:"

    @model_validator(mode="after")
    def _single_url_source(self) -> Self:
        _one_source(self, "url")
        return self

    def url_source(self) -> SecretSource:
        source = _secret_source(self, "url", "storage.redis.url", DEFAULT_REDIS_URL_ENV)
        assert source is not None  # a default variable is always named
        return source


class StorageConfig(_Model):
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: Path = Path("./data/trtc-monitor.db")
    retention: Duration = 24 * 3600.0
    redis: RedisStorageConfig = RedisStorageConfig()


class ClusterConfig(_Model):
    """Replicas sharing one Redis (SPEC section 13); ignored with the sqlite backend."""

    replica_id: Annotated[str, Field(max_length=128)] = ""  # default: host name and process id
    heartbeat: Duration = 2.0
    member_timeout: Duration = 10.0

    @model_validator(mode="after")
    def _timeout_outlasts_heartbeats(self) -> Self:
        # A replica must miss a couple of heartbeats before it is declared dead, or one slow
        # renewal would move its tasks away and back.
        if self.member_timeout < 2 * self.heartbeat:
            raise _LocatedErrors(
                [
                    (
                        ("member_timeout",),
                        f"member_timeout ({format_duration(self.member_timeout)}) must be at "
                        f"least twice the heartbeat ({format_duration(self.heartbeat)})",
                    )
                ]
            )
        return self


# "auto", then the chain in the order it is tried (SPEC section 5).
CREDENTIAL_MODES = ("auto", "static", "env", "oidc", "profile", "cvm_role")
_STATIC_KEYS = tuple(
    f"{base}{suffix}"
    for base in ("secret_id", "secret_key", "token")
    for suffix in ("_env", "_file", "")
)
ROLE_ARN_RE = re.compile(r"qcs::cam::uin/[0-9]+:role(?:Name)?/[A-Za-z0-9_+=,.@/-]{1,128}")
ROLE_SESSION_NAME_RE = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
# STS DurationSeconds: 15 minutes to 12 hours.
ROLE_DURATION_MIN = 900.0
ROLE_DURATION_MAX = 43200.0


def _check_role_arn(value: str) -> str:
    if value and not ROLE_ARN_RE.fullmatch(value):
        raise ValueError(
            f'invalid role_arn "{value}" (e.g. qcs::cam::uin/100000000001:roleName/monitor)'
        )
    return value


def _check_session_name(value: str) -> str:
    if not ROLE_SESSION_NAME_RE.fullmatch(value):
        raise ValueError(
            "invalid role_session_name (2 to 64 characters from A-Z a-z 0-9 _ + = , . @ -)"
        )
    return value


def _check_role_duration(value: float) -> float:
    if not ROLE_DURATION_MIN <= value <= ROLE_DURATION_MAX:
        raise ValueError("role_duration must be between 15m and 12h (STS DurationSeconds)")
    return value


def _check_metadata_endpoint(value: str) -> str:
    _check_http_url(value)
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f'invalid metadata_endpoint "{value}" (just scheme://host[:port])')
    return value


class AccountConfig(_Model):
    secret_id_env: EnvName | None = None
    secret_id_file: Path | None = None
    secret_id: Secret | None = None
    secret_key_env: EnvName | None = None
    secret_key_file: Path | None = None
    secret_key: Secret | None = None
    token_env: EnvName | None = None
    token_file: Path | None = None
    token: Secret | None = None
    endpoint: Annotated[str, AfterValidator(_check_endpoint)] = DEFAULT_ENDPOINT
    language: Literal["en-US", "zh-CN"] = "en-US"
    rate_limit: PositiveInt = 20
    rate_window: Duration = 1.0
    rate_guard: Fraction = 0.02
    # Where the credentials come from (SPEC section 5, "Credentials").
    credentials: Literal["auto", "static", "env", "profile", "oidc", "cvm_role"] = "auto"
    profile: Name = "default"
    role_arn: Annotated[str, AfterValidator(_check_role_arn)] = ""
    role_session_name: Annotated[str, AfterValidator(_check_session_name)] = "trtc-monitor"
    role_duration: Annotated[Duration, AfterValidator(_check_role_duration)] = 7200.0
    sts_endpoint: Annotated[str, AfterValidator(_check_endpoint)] = "sts.tencentcloudapi.com"
    metadata_endpoint: Annotated[str, AfterValidator(_check_metadata_endpoint)] = (
        "http://metadata.tencentyun.com"
    )

    @field_validator("rate_guard")
    @classmethod
    def _guard_range(cls, value: float) -> float:
        if not 0 <= value <= 0.5:
            raise ValueError("rate_guard must be between 0% and 50%")
        return value

    @model_validator(mode="after")
    def _single_sources(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for base in ("secret_id", "secret_key", "token"):
            try:
                _one_source(self, base)
            except _LocatedErrors as exc:
                problems.extend(exc.problems)
        if self.credentials not in ("auto", "static"):
            for key in _STATIC_KEYS:
                if getattr(self, key) is not None:
                    problems.append(
                        (
                            (key,),
                            f"{key} is only used with credentials static or auto "
                            f"(this account uses credentials {self.credentials})",
                        )
                    )
        if problems:
            raise _LocatedErrors(problems)
        return self

    @property
    def has_static_keys(self) -> bool:
        """Any of the account's own secret_id*/secret_key*/token* keys is set."""
        return any(getattr(self, key) is not None for key in _STATIC_KEYS)

    @property
    def uses_static(self) -> bool:
        """The static source applies: named, or first in the auto chain with keys set. Its
        keys are read with the other configured secrets, so a missing one is an error."""
        return self.credentials == "static" or (self.credentials == "auto" and self.has_static_keys)

    def describe_credentials(self, name: str) -> str:
        """One line for check-config: the chain in the order it is tried, never a value."""
        static = f"static (key from {self.secret_key_source(name).describe()})"
        parts = {
            "static": static,
            "env": "env (TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY)",
            "oidc": "oidc (TKE_ROLE_ARN and TKE_WEB_IDENTITY_TOKEN_FILE via STS)",
            "profile": f"profile [{self.profile}] of ~/.tencentcloud/credentials or "
            "/etc/tencentcloud/credentials",
            "cvm_role": f"cvm_role (metadata {self.metadata_endpoint})",
        }
        if self.credentials == "auto":
            chain = [parts[m] for m in CREDENTIAL_MODES[1:] if m != "static" or self.uses_static]
            text = "auto: first present of " + ", ".join(chain)
        else:
            text = parts[self.credentials]
        if self.role_arn:
            text += (
                f"; then assumes {self.role_arn} for {format_duration(self.role_duration)} "
                f"via STS {self.sts_endpoint}"
            )
        return text

    def secret_id_source(self, name: str) -> SecretSource:
        key = f"accounts.{name}.secret_id"
        source = _secret_source(self, "secret_id", key, DEFAULT_SECRET_ID_ENV)
        assert source is not None
        return source

    def secret_key_source(self, name: str) -> SecretSource:
        key = f"accounts.{name}.secret_key"
        source = _secret_source(self, "secret_key", key, DEFAULT_SECRET_KEY_ENV)
        assert source is not None
        return source

    def token_source(self, name: str) -> SecretSource:
        """Where the session token is read from. The token is optional: permanent credentials
        have none, so an unset variable or a missing file means "no token"."""
        source = _secret_source(self, "token", f"accounts.{name}.token", DEFAULT_TOKEN_ENV)
        assert source is not None
        return source


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
        raise _LocatedErrors(problems)
    return value


class PollingConfig(_Model):
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


_unknown_account = unknown_account


def _check_callback_app(value: object) -> int:
    """An application id as a key of ``callbacks.apps`` (YAML reads it as a number)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SDK_APP_ID:
        raise ValueError(f"{value!r} is not an SdkAppId (a positive integer)")
    return value


CallbackApp = Annotated[int, BeforeValidator(_check_callback_app)]


class CallbackAppConfig(_Model):
    """The callback key of one TRTC application (each has its own in the console)."""

    key_env: EnvName | None = None
    key_file: Path | None = None
    key: Secret | None = None

    @model_validator(mode="after")
    def _single_key_source(self) -> Self:
        _one_source(self, "key")
        return self

    def key_source(self, sdk_app_id: int) -> SecretSource | None:
        return _secret_source(self, "key", f"callbacks.apps.{sdk_app_id}.key")


class CallbacksConfig(_Model):
    path: str = "/callbacks/trtc"
    key_env: EnvName | None = None
    key_file: Path | None = None
    key: Secret | None = None
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
    listen: Annotated[str, AfterValidator(_check_listen)] | None = None
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
    def _single_key_source(self) -> Self:
        _one_source(self, "key")
        if self.key_source() is None:
            keyless = [app for app, conf in self.apps.items() if conf.key_source(app) is None]
            if keyless:
                raise _LocatedErrors(
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
            raise _LocatedErrors(
                [(("web_config_file",), "needs callbacks.listen (the listener it configures)")]
            )
        if self.listen is not None and not self.enabled:
            raise _LocatedErrors(
                [(("listen",), "callbacks are off (no key is configured): nothing to serve")]
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.key_source() is not None or bool(self.apps)

    def key_source(self) -> SecretSource | None:
        return _secret_source(self, "key", "callbacks.key")


class ExitAlertConfig(_Model):
    enabled: bool = True
    severity: Severity = "critical"
    expected_leave_codes: tuple[Annotated[int, Field(strict=True)], ...] = (0, 1, 2)


class ErrorAlertConfig(_Model):
    enabled: bool = True
    severity: Severity = "warning"
    consecutive: PositiveInt = 3


class StaleAlertConfig(_Model):
    enabled: bool = True
    severity: Severity = "warning"
    after: StaleAfter = StaleAfter(multiple=3.0)


class IdleAlertConfig(_Model):
    enabled: bool = True
    severity: Severity = "warning"
    after: Duration = 300.0


class UploadAlertConfig(_Model):
    """RecordingUploadFailed and RecordingUploadOverdue (SPEC section 8, "uploads")."""

    enabled: bool = True
    severity: Severity = "critical"
    deadline: Duration = 1800.0  # from the stop to "upload finished"


class CredentialsAlertConfig(_Model):
    enabled: bool = True
    severity: Severity = "warning"
    before: Duration = 900.0


class AlertmanagerReceiver(_Model):
    type: Literal["alertmanager"]
    name: Name = ""
    urls: Annotated[tuple[HttpURL, ...], Field(min_length=1)]
    resend: Duration = 60.0
    timeout: Duration = 10.0
    queue_size: PositiveInt = 1000


class WebhookReceiver(_Model):
    type: Literal["webhook"]
    name: Name = ""
    url: HttpURL
    headers_file: Path | None = None
    headers_env: EnvName | None = None
    resend: Duration | None = None
    timeout: Duration = 10.0
    queue_size: PositiveInt = 1000

    @model_validator(mode="after")
    def _single_headers_source(self) -> Self:
        if self.headers_file is not None and self.headers_env is not None:
            raise _LocatedErrors([(("headers_env",), "set only one of headers_file, headers_env")])
        return self

    def headers_source(self, index: int) -> SecretSource | None:
        """``index`` is the receiver's place in ``alerts.receivers`` (for messages)."""
        key = f"alerts.receivers[{index}].headers"
        if self.headers_env is not None:
            return SecretSource.from_env(self.headers_env, key)
        if self.headers_file is not None:
            return SecretSource.from_file(self.headers_file, key)
        return None


# --- chat-robot receivers (SPEC section 7): WeCom, DingTalk, Feishu, Slack -----------------

ROBOT_TYPES: tuple[str, ...] = ("wecom", "dingtalk", "feishu", "slack")
# Only these sign their requests; a secret on another robot would be silently unused.
SIGNED_ROBOT_TYPES: frozenset[str] = frozenset({"dingtalk", "feishu"})
# What a message template may name (``$name``); see monitor.alerts.robots.messages.
TEMPLATE_FIELDS: frozenset[str] = frozenset(
    {
        "status",
        "alertname",
        "severity",
        "summary",
        "description",
        "task",
        "room",
        "from_status",
        "to_status",
        "code",
        "meaning",
        "request_id",
        "starts_at",
        "ends_at",
        "link",
    }
)


def _check_template(value: str) -> str:
    template = string.Template(value)
    if not template.is_valid():
        raise ValueError("invalid template (write $name or ${name}; $$ for a dollar sign)")
    unknown = sorted(set(template.get_identifiers()) - TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown template field(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(TEMPLATE_FIELDS))})"
        )
    if not value.strip():
        raise ValueError("empty template")
    return value


def _non_negative_seconds(value: object) -> float:
    return _seconds(value, allow_zero=True)


class RobotReceiver(_Model):
    """A chat robot: the URL (and the signing secret) are secrets, read like any other."""

    type: Literal["wecom", "dingtalk", "feishu", "slack"]
    name: Name = ""
    url_env: EnvName | None = None
    url_file: Path | None = None
    url: Secret | None = None
    secret_env: EnvName | None = None
    secret_file: Path | None = None
    secret: Secret | None = None
    # Alerts that change within this window go out in one message.
    group_wait: Annotated[float, BeforeValidator(_non_negative_seconds)] = 3.0
    resend: Duration | None = None
    timeout: Duration = 10.0
    queue_size: PositiveInt = 1000
    # Messages per rate_window; unset: the platform's documented limit.
    rate_limit: PositiveInt | None = None
    rate_window: Duration = 60.0
    # Replaces the text of each alert in a message ($alertname, $status, ...).
    template: Annotated[str, AfterValidator(_check_template)] | None = None

    @field_validator("url_env", "url_file", "secret_env", "secret_file", mode="before")
    @classmethod
    def _a_name_not_a_url(cls, value: object, info: ValidationInfo) -> object:
        # The commonest slip is pasting the robot URL itself here; an error that quoted it
        # would print the robot's key.
        if isinstance(value, str) and "://" in value:
            field = info.field_name or ""
            holder = "an environment variable" if field.endswith("_env") else "a file"
            raise ValueError(f"takes the name of {holder} holding the value, not the URL")
        return value

    @model_validator(mode="after")
    def _sources(self) -> Self:
        _one_source(self, "url")
        _one_source(self, "secret")
        if all(getattr(self, n) is None for n in ("url_env", "url_file", "url")):
            raise _LocatedErrors([(("url_env",), "set one of url_env, url_file, url")])
        if self.type not in SIGNED_ROBOT_TYPES:
            given = [n for n in ("secret_env", "secret_file", "secret") if getattr(self, n)]
            if given:
                raise _LocatedErrors(
                    [((given[0],), f"{self.type} robots are not signed: remove {given[0]}")]
                )
        return self

    def url_source(self, index: int) -> SecretSource:
        """``index`` is the receiver's place in ``alerts.receivers`` (for messages)."""
        source = _secret_source(self, "url", f"alerts.receivers[{index}].url")
        assert source is not None  # checked by _sources
        return source

    def secret_source(self, index: int) -> SecretSource | None:
        return _secret_source(self, "secret", f"alerts.receivers[{index}].secret")


@dataclass(frozen=True, slots=True)
class RobotSecrets:
    """A robot's URL (it carries the robot's key) and its signing secret, when signed."""

    url: Secret
    secret: Secret | None = None


# --- end of chat-robot receivers ---------------------------------------------------------------

Receiver = Annotated[
    AlertmanagerReceiver | WebhookReceiver | RobotReceiver, Field(discriminator="type")
]


def _name_receivers(value: object) -> object:
    # Receivers are named in metrics and logs; an unnamed one is called after its type and place.
    if not isinstance(value, dict) or not isinstance(value.get("receivers"), list):
        return value
    receivers = [
        {**item, "name": f"{item.get('type')}-{index}"}
        if isinstance(item, dict) and item.get("name") is None
        else item
        for index, item in enumerate(value["receivers"])
    ]
    return {**value, "receivers": receivers}


class AlertsConfig(_Model):
    exit: ExitAlertConfig = ExitAlertConfig()
    error: ErrorAlertConfig = ErrorAlertConfig()
    stale: StaleAlertConfig = StaleAlertConfig()
    idle: IdleAlertConfig = IdleAlertConfig()
    upload: UploadAlertConfig = UploadAlertConfig()
    credentials: CredentialsAlertConfig = CredentialsAlertConfig()
    receivers: tuple[Receiver, ...] = ()

    _name_defaults = model_validator(mode="before")(_name_receivers)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: dict[str, int] = {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, receiver in enumerate(self.receivers):
            if receiver.name in seen:
                problems.append(
                    (
                        ("receivers", index, "name"),
                        f'duplicate receiver name "{receiver.name}" '
                        f"(also receivers[{seen[receiver.name]}])",
                    )
                )
            seen.setdefault(receiver.name, index)
        if problems:
            raise _LocatedErrors(problems)
        return self


class MetricsConfig(_Model):
    per_task: bool = True
    labels: tuple[LabelName, ...] = ()


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class LoggingConfig(_Model):
    format: Annotated[Literal["json", "console"], BeforeValidator(_lower)] = "json"
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"


def _default_accounts() -> dict[str, AccountConfig]:
    return {"default": AccountConfig()}


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """One secret the configuration refers to."""

    loc: tuple[str | int, ...]  # logical key path, e.g. ("accounts", "default", "secret_key")
    source: SecretSource
    required: bool
    line_loc: tuple[str | int, ...] = ()  # the key actually set in the file, for line numbers


class Config(_Model):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    cluster: ClusterConfig = ClusterConfig()
    accounts: Annotated[dict[Name, AccountConfig], Field(min_length=1)] = Field(
        default_factory=_default_accounts
    )
    polling: PollingConfig = PollingConfig()
    tasks: tuple[TaskSpec, ...] = ()
    callbacks: CallbacksConfig = CallbacksConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()

    _source: str = PrivateAttr(default="<string>")
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, value: object) -> object:
        # `server:` with everything below commented out means "defaults", not "null".
        if not isinstance(value, dict):
            return value
        cleaned = {k: v for k, v in value.items() if v is not None or k not in cls.model_fields}
        if isinstance(cleaned.get("accounts"), dict):
            cleaned["accounts"] = {
                k: ({} if v is None else v) for k, v in cleaned["accounts"].items()
            }
        return cleaned

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[TaskKey, int] = {}
        for index, task in enumerate(self.tasks):
            if task.account not in self.accounts:
                problems.append(
                    (("tasks", index, "account"), _unknown_account(task.account, self.accounts))
                )
            if task.key in seen:
                problems.append(
                    (("tasks", index), f"duplicate task {task.key} (also tasks[{seen[task.key]}])")
                )
            seen.setdefault(task.key, index)
        listen = self.callbacks.listen
        if listen is not None and parse_listen(listen)[1] == self.server.port != 0:
            problems.append((("callbacks", "listen"), "same port as server.listen"))
        if self.callbacks.enabled and self.callbacks.account not in self.accounts:
            problems.append(
                (
                    ("callbacks", "account"),
                    _unknown_account(self.callbacks.account, self.accounts),
                )
            )
        if problems:
            raise _LocatedErrors(problems)
        return self

    def __eq__(self, other: object) -> bool:
        # Equal settings are equal configurations, whatever file and lines they came from.
        if not isinstance(other, Config):
            return NotImplemented
        return dict(self) == dict(other)

    __hash__ = None  # type: ignore[assignment]  # dict fields: not hashable anyway

    @property
    def source(self) -> str:
        """The file this configuration was loaded from (``<string>`` for parsed text)."""
        return self._source

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of the file closest to key path ``loc``, when known."""
        return _locate(tuple(loc), self._lines)[1]

    def regions(self) -> list[str]:
        """Regions named by static tasks and by callbacks (when on), sorted."""
        regions = {task.region for task in self.tasks}
        if self.callbacks.enabled:
            regions.add(self.callbacks.region)
        return sorted(regions)

    def secret_specs(self) -> list[SecretSpec]:
        """Every secret the configuration refers to, with whether it must be present."""
        specs: list[SecretSpec] = []

        def add(
            model: BaseModel,
            parent: tuple[str | int, ...],
            base: str,
            source: SecretSource | None,
            required: bool = True,
        ) -> None:
            if source is not None:
                line_loc = (*parent, _field_used(model, base))
                specs.append(SecretSpec((*parent, base), source, required, line_loc))

        add(self.server, ("server",), "api_token", self.server.api_token_source())
        if self.storage.backend == "redis":
            redis = self.storage.redis
            add(redis, ("storage", "redis"), "url", redis.url_source())
        for name, account in self.accounts.items():
            if not account.uses_static:
                continue  # the other sources are read at run time (SPEC section 5)
            parent: tuple[str | int, ...] = ("accounts", name)
            add(account, parent, "secret_id", account.secret_id_source(name))
            add(account, parent, "secret_key", account.secret_key_source(name))
            add(account, parent, "token", account.token_source(name), required=False)
        add(self.callbacks, ("callbacks",), "key", self.callbacks.key_source())
        for app, app_config in self.callbacks.apps.items():
            add(app_config, ("callbacks", "apps", app), "key", app_config.key_source(app))
        for index, receiver in enumerate(self.alerts.receivers):
            if isinstance(receiver, WebhookReceiver):
                add(
                    receiver,
                    ("alerts", "receivers", index),
                    "headers",
                    receiver.headers_source(index),
                )
            elif isinstance(receiver, RobotReceiver):
                parent = ("alerts", "receivers", index)
                add(receiver, parent, "url", receiver.url_source(index))
                add(receiver, parent, "secret", receiver.secret_source(index))
        return specs

    def warnings(self) -> list[str]:
        """Problems that do not make the file invalid: literal secrets in the file, and
        ``*_env``/``*_file`` keys whose value looks like a secret rather than a name."""
        out: list[str] = []
        for spec in self.secret_specs():
            source = spec.source
            name = source.key.rsplit(".", 1)[-1]
            if source.kind == "literal":
                out.append(
                    self._format(
                        spec.line_loc,
                        f"{source.key}: literal secret in the configuration file; "
                        f"prefer {name}_env or {name}_file",
                    )
                )
            elif looks_like_secret(str(source.ref)):
                holder = "an environment variable" if source.kind == "env" else "a file"
                out.append(
                    self._format(
                        spec.line_loc,
                        f"{source.key}_{source.kind}: {shown_ref(str(source.ref))}; it takes "
                        f"the name of {holder} holding the secret",
                    )
                )
        return out

    def _format(self, loc: tuple[str | int, ...], message: str) -> str:
        line = _locate(loc, self._lines)[1]
        return f"{self._source}:{line}: {message}" if line else f"{self._source}: {message}"

    def summary(self) -> str:
        """A few lines for ``check-config``: what will run, never a secret."""
        out: list[str] = []
        server = self.server
        token = server.api_token_source()
        out.append(
            f"server: listening on {server.listen}; API token "
            + (f"from {token.describe()}" if token else "not set (mutating API calls disabled)")
        )
        storage = self.storage
        where = (
            f"URL from {storage.redis.url_source().describe()}, key prefix "
            f"{storage.redis.key_prefix!r}"
            if storage.backend == "redis"
            else f"at {storage.path}"
        )
        out.append(
            f"storage: {storage.backend} {where}, retention {format_duration(storage.retention)}"
        )
        if storage.backend == "redis":
            cluster = self.cluster
            out.append(
                f"cluster: replica {cluster.replica_id or '<host name>-<process id>'}, "
                f"heartbeat {format_duration(cluster.heartbeat)}, "
                f"member timeout {format_duration(cluster.member_timeout)}"
            )
        out.append(f"accounts ({len(self.accounts)}):")
        for name, account in self.accounts.items():
            endpoint = account.endpoint
            shown = endpoint if "{region}" in endpoint else str(Endpoint.parse(endpoint))
            out.append(
                f"  {name}: endpoint {shown}, {account.rate_limit} requests per "
                f"{format_duration(account.rate_window)} (guard {account.rate_guard:.0%})"
            )
            out.append(f"    credentials: {account.describe_credentials(name)}")
        regions = self.regions()
        out.append(f"regions in use: {', '.join(regions) if regions else 'none yet'}")
        by_status = ", ".join(
            f"{status} {format_duration(seconds)}"
            for status, seconds in self.polling.interval_by_status.items()
        )
        out.append(
            f"polling: every {format_duration(self.polling.interval)}"
            + (f" ({by_status})" if by_status else "")
            + f", jitter {self.polling.jitter:.0%}, timeout {format_duration(self.polling.timeout)}"
        )
        out.append(f"static tasks: {len(self.tasks)}")
        callbacks = self.callbacks
        if callbacks.enabled:
            out.append(
                f"callbacks: on at {callbacks.path} (auto_register "
                f"{'on' if callbacks.auto_register else 'off'}, account {callbacks.account}, "
                f"region {callbacks.region})"
                + (
                    f"; only applications {', '.join(map(str, sorted(callbacks.apps)))}"
                    if callbacks.apps
                    else ""
                )
            )
        else:
            out.append("callbacks: off (no key configured)")
        alerts = self.alerts
        rules = [
            f"exit ({alerts.exit.severity})" if alerts.exit.enabled else None,
            f"error after {alerts.error.consecutive} ({alerts.error.severity})"
            if alerts.error.enabled
            else None,
            f"stale after {alerts.stale.after} ({alerts.stale.severity})"
            if alerts.stale.enabled
            else None,
            f"idle after {format_duration(alerts.idle.after)} ({alerts.idle.severity})"
            if alerts.idle.enabled
            else None,
            f"upload failed or overdue after {format_duration(alerts.upload.deadline)} "
            f"({alerts.upload.severity})"
            if alerts.upload.enabled
            else None,
            f"credentials expiring within {format_duration(alerts.credentials.before)} "
            f"({alerts.credentials.severity})"
            if alerts.credentials.enabled
            else None,
        ]
        out.append("alerts: " + (", ".join(r for r in rules if r) or "all off"))
        out.append(
            f"receivers ({len(alerts.receivers)}):" if alerts.receivers else "receivers: none"
        )
        for receiver in alerts.receivers:
            if isinstance(receiver, AlertmanagerReceiver):
                target = ", ".join(_origin(url) for url in receiver.urls)
            elif isinstance(receiver, RobotReceiver):
                # The robot URL is a secret: say where it comes from, never what it is.
                target = f"URL from {receiver.url_source(0).describe()}"
                if receiver.secret_source(0) is not None:
                    target += ", signed"
            else:
                target = _origin(receiver.url)
            out.append(f"  {receiver.name}: {receiver.type} -> {target}")
        out.append(
            f"metrics: per-task series {'on' if self.metrics.per_task else 'off'}"
            + (f", info labels {', '.join(self.metrics.labels)}" if self.metrics.labels else "")
        )
        out.append(f"logging: {self.logging.format}, level {self.logging.level}")
        return "\n".join(out)


def _origin(url: str) -> str:
    # Webhook URLs often carry a token in their path or query; the origin is enough to recognise.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: Path | str) -> Config:
    """Read and validate one configuration file; ConfigError lists every problem found."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a directory, not a configuration file"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot be read ({exc.strerror})"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not valid UTF-8 (byte {exc.start})"]) from None
    return parse_config(text, source)


# libyaml, when PyYAML was built with it: parsing 10,000 listed tasks took seconds in Python.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)


def _fast_parse(text: str) -> tuple[yaml.Node | None, Any] | None:
    """The document's node tree and data by libyaml; None when unavailable or when the text is
    not valid YAML (the Python parser then words the error, the same on every machine)."""
    if _FAST_LOADER is None:
        return None
    loader = _FAST_LOADER(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate configuration text; ``source`` prefixes every error message."""
    fast = _fast_parse(text)
    if fast is not None:
        node, data = fast
        return _validate(node, data, source)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    return _validate(node, data, source)


def _validate(node: yaml.Node | None, data: Any, source: str) -> Config:
    if node is None or data is None:
        raise ConfigError(
            [f"{source}: the file is empty (expected sections such as server, accounts, tasks)"]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{source}:{node.start_mark.line + 1}: the top level must be a mapping of "
                f"sections (server, storage, accounts, ...), not a {type(data).__name__}"
            ]
        )

    lines: dict[tuple[str | int, ...], int] = {}
    problems: list[tuple[int, str]] = []
    _collect_lines(node, (), lines, problems, source, set())

    # Tasks check their account against the accounts section while it is validated, so an
    # unknown account is reported together with every other problem.
    accounts = data.get("accounts")
    # YAML types scalars by their look: a label written `room: 42` is text all the same.
    context: dict[str, Any] = {"yaml": True}
    if accounts is None:
        context["accounts"] = {"default"}
    elif isinstance(accounts, dict):
        context["accounts"] = {str(name) for name in accounts}
    config: Config | None = None
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        for loc, message in _flatten(exc):
            display, line = _locate(loc, lines)
            where = f"{source}:{line}" if line else source
            problems.append((line or 0, f"{where}: {display or '(top level)'}: {message}"))
    if problems:
        problems.sort(key=lambda item: item[0])
        raise ConfigError(_dedupe(message for _, message in problems))
    assert config is not None
    config._source = source
    config._lines = lines
    return config


def _dedupe(messages: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _collect_lines(
    node: yaml.Node,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    problems: list[tuple[int, str]],
    source: str,
    walked: set[int],
) -> None:
    if path not in lines:
        lines[path] = node.start_mark.line + 1
    # An alias shares its anchor's node: walk it once, or nested aliases (and recursive ones)
    # would make this walk exponential. Keys under an alias map to the alias's own line.
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                display = _display((*path, key))
                problems.append((line, f"{source}:{line}: {display}: duplicate key"))
            seen.add(key)
            lines[(*path, key)] = line
            _collect_lines(value_node, (*path, key), lines, problems, source, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _collect_lines(item, (*path, index), lines, problems, source, walked)


def _display(loc: tuple[str | int, ...]) -> str:
    out = ""
    for comp in loc:
        if isinstance(comp, int):
            out += f"[{comp}]"
        else:
            out += f".{comp}" if out else str(comp)
    return out


_RECEIVER_TYPES = frozenset({"alertmanager", "webhook", *ROBOT_TYPES})


def _locate(
    loc: tuple[str | int, ...], lines: Mapping[tuple[str | int, ...], int]
) -> tuple[str, int | None]:
    """(displayed key path, line of the closest key present in the file) for a pydantic loc."""
    known: tuple[str | int, ...] = ()
    shown: list[str | int] = []
    for comp in loc:
        if comp == "[key]":
            continue
        # The tag of a discriminated union is part of pydantic's loc, not of the file.
        if (
            comp in _RECEIVER_TYPES
            and len(shown) >= 2
            and shown[-2] == "receivers"
            and isinstance(shown[-1], int)
        ):
            continue
        if len(known) == len(shown):
            # Mapping keys are recorded as text: an int here may be a key such as `1:`.
            for candidate in ((*known, comp), (*known, str(comp))):
                if candidate in lines:
                    known = candidate
                    comp = candidate[-1]
                    break
        shown.append(comp)
    return _display(tuple(shown)), lines.get(known)


def _flatten(exc: ValidationError) -> Iterator[tuple[tuple[str | int, ...], str]]:
    errors = exc.errors()
    locs = [tuple(error["loc"]) for error in errors]
    for error in errors:
        loc = tuple(error["loc"])
        # A list whose only item was rejected is also "too short": the item's error says it all.
        if error["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in locs
        ):
            continue
        ctx = error.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, _LocatedErrors):
            for sub, message in cause.problems:
                yield (*loc, *sub), message
            continue
        if isinstance(cause, LabelError):
            yield (*loc, cause.name), str(cause)
            continue
        yield loc, _message(error, loc)


def _message(error: Any, loc: tuple[str | int, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if allowed else []
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), Exception):
        return str(ctx["error"])
    if kind == "union_tag_invalid":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        tag, expected = ctx.get("tag"), ctx.get("expected_tags")
        return f'unknown {discriminator} "{tag}" (one of {expected})'
    if kind == "union_tag_not_found":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        return f"required key {discriminator} is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "expected a mapping (key: value)"
    if kind in ("tuple_type", "list_type"):
        return "expected a list"
    return str(error["msg"])


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model found at ``loc`` (for "did you mean" hints)."""
    current: Any = Config
    for comp in loc:
        current = _child_type(current, comp)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _child_type(tp: Any, comp: str | int) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(comp))
        return None if info is None else info.annotation
    origin = typing.get_origin(tp)
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin in (tuple, list):
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(tp):
            member = _unwrap(member)
            if isinstance(member, type) and issubclass(member, BaseModel):
                tag = member.model_fields.get("type")
                if tag is not None and comp in typing.get_args(tag.annotation):
                    return member
    return None


# ---------------------------------------------------------------------------------------------
# Secrets and check-config


@dataclass(frozen=True, slots=True)
class ResolvedSecrets:
    """Every secret the configuration names, read from its source."""

    # by account name; only accounts that use their own keys (the static source)
    accounts: dict[str, Credentials] = field(default_factory=dict)
    api_token: Secret | None = None
    callback_key: Secret | None = None
    # callbacks.apps: SdkAppId -> its own key (absent: checked with ``callback_key``)
    callback_app_keys: dict[int, Secret] = field(default_factory=dict)
    # receiver name -> header name -> value
    webhook_headers: dict[str, dict[str, Secret]] = field(default_factory=dict)
    # receiver name -> URL and signing secret of a chat robot
    robots: dict[str, RobotSecrets] = field(default_factory=dict)
    redis_url: Secret | None = None  # with storage.backend: redis

    def secret_values(self) -> list[str]:
        """The values the log redactor must hide."""
        values: list[str] = []
        for credentials in self.accounts.values():
            values.extend(credentials.secret_values())
        for secret in (self.api_token, self.callback_key, self.redis_url):
            if secret is not None:
                values.append(secret.get())
        values.extend(secret.get() for secret in self.callback_app_keys.values())
        if self.redis_url is not None:
            # The password alone too: a message may show it without the rest of the URL.
            values.extend(_url_password(self.redis_url.get()))
        for headers in self.webhook_headers.values():
            values.extend(value.get() for value in headers.values() if value.get())
        for robot in self.robots.values():
            values.append(robot.url.get())
            # The key inside the URL too: a log line may show the query without the rest.
            values.extend(_url_tokens(robot.url.get()))
            if robot.secret is not None:
                values.append(robot.secret.get())
        return values

    def values(self) -> list[str]:
        """Same as ``secret_values()``: what ``configure_logging``/``set_secrets`` take."""
        return self.secret_values()


def resolve_secrets(config: Config, environ: Mapping[str, str] | None = None) -> ResolvedSecrets:
    """Read every secret; ConfigError lists each missing one by key path and source."""
    errors: list[str] = []
    values: dict[tuple[str | int, ...], Secret | None] = {}
    for spec in config.secret_specs():
        try:
            values[spec.loc] = (
                spec.source.require(environ)
                if spec.required
                else _optional(spec.source.resolve(environ))
            )
        except SecretError as exc:
            errors.append(config._format(spec.line_loc, str(exc)))

    headers: dict[str, dict[str, Secret]] = {}
    for index, receiver in enumerate(config.alerts.receivers):
        loc: tuple[str | int, ...] = ("alerts", "receivers", index, "headers")
        raw = values.get(loc)
        if isinstance(receiver, WebhookReceiver) and raw is not None:
            source = receiver.headers_source(index)
            assert source is not None
            try:
                parsed = parse_headers(raw.get(), f"{source.key}: {source.describe()}")
            except SecretError as exc:
                errors.append(
                    config._format((*loc[:-1], _field_used(receiver, "headers")), str(exc))
                )
                continue
            headers[receiver.name] = {name: Secret(value) for name, value in parsed.items()}
    robots: dict[str, RobotSecrets] = {}
    for index, receiver in enumerate(config.alerts.receivers):
        if not isinstance(receiver, RobotReceiver):
            continue
        parent: tuple[str | int, ...] = ("alerts", "receivers", index)
        url = values.get((*parent, "url"))
        if url is None:
            continue  # its absence is already an error
        problem = _robot_url_problem(url.get())
        if problem:
            where = receiver.url_source(index)
            errors.append(
                config._format(
                    (*parent, _field_used(receiver, "url")),
                    f"{where.key}: {where.describe()} {problem}",
                )
            )
            continue
        robots[receiver.name] = RobotSecrets(url, values.get((*parent, "secret")))
    if errors:
        raise ConfigError(errors)

    credentials: dict[str, Credentials] = {}
    for name, account in config.accounts.items():
        if not account.uses_static:
            continue
        loc = ("accounts", name)
        secret_id, secret_key = values[(*loc, "secret_id")], values[(*loc, "secret_key")]
        assert secret_id is not None
        assert secret_key is not None
        token = values.get((*loc, "token"))
        credentials[name] = Credentials(
            secret_id.get(), secret_key.get(), None if token is None else token.get()
        )
    return ResolvedSecrets(
        accounts=credentials,
        api_token=values.get(("server", "api_token")),
        callback_key=values.get(("callbacks", "key")),
        callback_app_keys={
            app: secret
            for app in config.callbacks.apps
            if (secret := values.get(("callbacks", "apps", app, "key"))) is not None
        },
        webhook_headers=headers,
        robots=robots,
        redis_url=values.get(("storage", "redis", "url")),
    )


def callback_app_keys(
    callbacks: CallbacksConfig, secrets: ResolvedSecrets
) -> dict[int, str] | None:
    """With ``callbacks.apps``: the key each application's callbacks are checked with (its own,
    else the single ``callbacks.key``); None when every callback is checked with the single key."""
    if not callbacks.apps:
        return None
    keys: dict[int, str] = {}
    for app in callbacks.apps:
        secret = secrets.callback_app_keys.get(app) or secrets.callback_key
        if secret is not None:
            keys[app] = secret.get()
    return keys


def _robot_url_problem(url: str) -> str:
    """Why a robot URL cannot be used ("" if it can); never quotes the URL: it is a secret."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL"
    return ""


def _url_tokens(url: str) -> list[str]:
    # Robot keys live in the query (WeCom key, DingTalk access_token) or the last path
    # segment (Feishu hook id, Slack's T/B/secret path): long enough parts are secrets.
    parts = urlsplit(url)
    pieces = [v for _, v in parse_qsl(parts.query)]
    pieces.extend(parts.path.split("/"))
    return [p for p in pieces if len(p) >= 16]


def _url_password(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []


def _optional(value: str | None) -> Secret | None:
    return None if value is None else Secret(value)


@dataclass(frozen=True, slots=True)
class Validated:
    """A configuration as ``run`` takes it: the file, every secret it names, read, and the
    problems that do not stop it (``warnings``)."""

    config: Config
    secrets: ResolvedSecrets
    warnings: list[str]


def validate_for_run(path: Path | str, environ: Mapping[str, str] | None = None) -> Validated:
    """Everything ``run`` checks before it opens the store or polls: the file (keys, values,
    access hosts), every secret it names (read from its variable or file), and each account's
    credential plan and access host as the daemon builds them. ConfigError lists every problem;
    ``check-config`` runs this very function, so a file it calls valid is one ``run`` takes."""
    from monitor.accounts import build_accounts
    from monitor.credentials import CredentialSet

    config = load_config(path)
    secrets = resolve_secrets(config, environ)
    problems = _storage_problems(config)
    if problems:
        raise ConfigError(problems)
    try:
        # As the daemon does at start, without starting anything: no I/O.
        plan = CredentialSet(lambda event: None).plan(config, secrets)
        build_accounts(config, plan.providers)
    except ValueError as exc:
        raise ConfigError([f"{config.source}: {exc}"]) from None
    return Validated(config, secrets, config.warnings())


_SQLITE_HEADER = b"SQLite format 3\x00"


def _storage_problems(config: Config) -> list[str]:
    """What makes ``run`` refuse an SQLite ``storage.path`` before anything else, found
    without creating or locking anything (a running daemon may hold the file: that is fine)."""
    if config.storage.backend != "sqlite":
        return []
    store = Path(config.storage.path)
    loc: tuple[str | int, ...] = ("storage", "path")
    if store.is_dir():
        return [config._format(loc, f"store {store} is a directory; storage.path must name a file")]
    if store.is_file():
        try:
            with store.open("rb") as file:
                head = file.read(len(_SQLITE_HEADER))
        except OSError as exc:
            return [config._format(loc, f"store {store} cannot be read ({exc.strerror})")]
        if head and head != _SQLITE_HEADER:
            return [config._format(loc, f"store {store} is not a SQLite database")]
        return []
    ancestor = store.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return [
            config._format(
                loc, f"store {store}: cannot create its directory ({ancestor} is not a directory)"
            )
        ]
    return []


def _secret_warnings(config: Config, environ: Mapping[str, str] | None) -> list[str]:
    """``--syntax-only``: secrets that cannot be read on this machine, as warnings."""
    warnings: list[str] = []
    for spec in config.secret_specs():
        if spec.source.kind == "literal" or not spec.required:
            continue
        try:
            value = spec.source.require(environ)
            if spec.loc[-1] == "headers":
                parse_headers(value.get(), f"{spec.source.key}: {spec.source.describe()}")
            elif spec.loc[-1] == "url" and spec.loc[:2] == ("alerts", "receivers"):
                problem = _robot_url_problem(value.get())
                if problem:
                    raise SecretError(f"{spec.source.key}: {spec.source.describe()} {problem}")
        except SecretError as exc:
            warnings.append(config._format(spec.line_loc, str(exc)))
    return warnings


def credential_warnings(
    config: Config, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> list[str]:
    """Accounts whose credential chain finds nothing on this machine (told without the
    network: the CVM role is named, not asked)."""
    from monitor.credentials.chain import describe_tried
    from monitor.credentials.presence import local_presence

    warnings: list[str] = []
    for name, account in config.accounts.items():
        found = local_presence(account, environ=environ, home=home)
        if found.found is not None:
            continue
        tried = describe_tried(found.tried)
        where = ("accounts", name, "credentials")
        if found.remote is not None:
            message = (
                f"accounts.{name}: no credentials on this machine (tried {tried}); only the "
                f"CVM role remains (metadata {found.remote}, not asked by check-config): "
                "without one, every poll of this account fails (RecordingMonitorNoCredentials)"
            )
        else:
            message = (
                f"accounts.{name}: no credentials found (tried {tried}): every poll of this "
                "account will fail (RecordingMonitorNoCredentials)"
            )
        line = _locate(where, config._lines)[1] or _locate(where[:2], config._lines)[1]
        warnings.append(
            f"{config.source}:{line}: {message}" if line else f"{config.source}: {message}"
        )
    return warnings


def check_config(
    path: Path | str,
    environ: Mapping[str, str] | None = None,
    *,
    syntax_only: bool = False,
    home: Path | None = None,
) -> tuple[int, str]:
    """Exit code and text of ``check-config``: 0 and a summary, or 1 and every error.

    The checks are ``run``'s own (``validate_for_run``): a secret that cannot be read is an
    error here as it is there. With ``syntax_only`` (for checking a file on a machine that is
    not the one that runs it) only the file is checked, and unreadable secrets are warnings.
    Warnings (literal secrets, an account without credentials here) never fail the check.
    """
    try:
        if syntax_only:
            config = load_config(path)
            warnings = config.warnings() + _secret_warnings(config, environ)
        else:
            # The literal secrets it reads are reported below as warnings, once, rather than
            # also logged on stderr as `run` logs them.
            quiet = logging.getLogger("monitor.secrets")
            was = quiet.disabled
            quiet.disabled = True
            try:
                validated = validate_for_run(path, environ)
            finally:
                quiet.disabled = was
            config = validated.config
            warnings = validated.warnings + credential_warnings(config, environ, home)
    except ConfigError as exc:
        return 1, "\n".join(exc.errors)
    text = f"{config.source}: valid\n{config.summary()}"
    if warnings:
        text += "\n" + "\n".join(f"warning: {w}" for w in warnings)
    return 0, text
