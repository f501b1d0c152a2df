"""Section ``alerts``: the rules, and the receivers (Alertmanager, webhooks, chat robots)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config.errors import LocatedErrors
from monitor.config.sources import one_source, secret_source, source_keys
from monitor.config.types import (
    Duration,
    EnvName,
    HttpURL,
    Model,
    Name,
    PositiveInt,
    Severity,
    StaleAfter,
    non_negative_seconds,
)
from monitor.secrets import Secret, SecretSource


class RuleConfig(Model):
    """What every alert rule has: on or off, and the severity its alerts carry."""

    enabled: bool = True
    severity: Severity = "warning"


class ExitAlertConfig(RuleConfig):
    severity: Severity = "critical"
    expected_leave_codes: tuple[Annotated[int, Field(strict=True)], ...] = (0, 1, 2)


class ErrorAlertConfig(RuleConfig):
    consecutive: PositiveInt = 3


class StaleAlertConfig(RuleConfig):
    after: StaleAfter = StaleAfter(multiple=3.0)


class IdleAlertConfig(RuleConfig):
    after: Duration = 300.0


class UploadAlertConfig(RuleConfig):
    """RecordingUploadFailed and RecordingUploadOverdue: a recording's upload failed, or has not
    finished ``deadline`` after the recording stopped."""

    severity: Severity = "critical"
    deadline: Duration = 1800.0  # from the stop to "upload finished"


class CredentialsAlertConfig(RuleConfig):
    before: Duration = 900.0


class AlertmanagerReceiver(Model):
    type: Literal["alertmanager"]
    name: Name = ""
    urls: Annotated[tuple[HttpURL, ...], Field(min_length=1)]
    resend: Duration = 60.0
    timeout: Duration = 10.0
    queue_size: PositiveInt = 1000


class WebhookReceiver(Model):
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
            raise LocatedErrors([(("headers_env",), "set only one of headers_file, headers_env")])
        return self

    def headers_source(self, index: int) -> SecretSource | None:
        """``index`` is the receiver's place in ``alerts.receivers`` (for messages)."""
        key = f"alerts.receivers[{index}].headers"
        if self.headers_env is not None:
            return SecretSource.from_env(self.headers_env, key)
        if self.headers_file is not None:
            return SecretSource.from_file(self.headers_file, key)
        return None


# --- chat-robot receivers: WeCom, DingTalk, Feishu, Slack --------------------------------------

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


class RobotReceiver(Model):
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
    group_wait: Annotated[float, BeforeValidator(non_negative_seconds)] = 3.0
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
        one_source(self, "url")
        one_source(self, "secret")
        if all(getattr(self, n) is None for n in source_keys("url")):
            raise LocatedErrors([(("url_env",), "set one of url_env, url_file, url")])
        if self.type not in SIGNED_ROBOT_TYPES:
            given = [n for n in source_keys("secret") if getattr(self, n)]
            if given:
                raise LocatedErrors(
                    [((given[0],), f"{self.type} robots are not signed: remove {given[0]}")]
                )
        return self

    def url_source(self, index: int) -> SecretSource:
        """``index`` is the receiver's place in ``alerts.receivers`` (for messages)."""
        source = secret_source(self, "url", f"alerts.receivers[{index}].url")
        assert source is not None  # checked by _sources
        return source

    def secret_source(self, index: int) -> SecretSource | None:
        return secret_source(self, "secret", f"alerts.receivers[{index}].secret")


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


class AlertsConfig(Model):
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
            raise LocatedErrors(problems)
        return self
