"""``accounts``: a Tencent Cloud account's keys, endpoint, request budget and credential chain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, field_validator, model_validator

from monitor.config.errors import LocatedErrors
from monitor.config.sources import secret_source_or_env, source_keys, source_problems
from monitor.config.types import (
    Duration,
    EnvName,
    Fraction,
    Model,
    Name,
    PositiveInt,
    check_endpoint,
    check_http_url,
)
from monitor.durations import format_duration
from monitor.secrets import Secret, SecretSource
from monitor.trtc.sites import Site, site_info

# Names of environment variables, not values.
DEFAULT_SECRET_ID_ENV = "TENCENTCLOUD_SECRET_ID"  # noqa: S105
DEFAULT_SECRET_KEY_ENV = "TENCENTCLOUD_SECRET_KEY"  # noqa: S105
DEFAULT_TOKEN_ENV = "TENCENTCLOUD_SESSION_TOKEN"  # noqa: S105
# The site an account is on when it does not say: the site of the API pages the monitor
# follows. Its default access host is the account's endpoint unless one is given.
DEFAULT_SITE = Site.INTERNATIONAL
DEFAULT_ENDPOINT = site_info(DEFAULT_SITE).default_host

# "auto", then the chain in the order it is tried.
CREDENTIAL_MODES = ("auto", "static", "env", "oidc", "profile", "cvm_role")
# The account's own keys (the static source), and the variable each is read from by default.
_STATIC_DEFAULTS = {
    "secret_id": DEFAULT_SECRET_ID_ENV,
    "secret_key": DEFAULT_SECRET_KEY_ENV,
    "token": DEFAULT_TOKEN_ENV,
}
_STATIC_KEYS = tuple(key for base in _STATIC_DEFAULTS for key in source_keys(base))
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
    check_http_url(value)
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f'invalid metadata_endpoint "{value}" (just scheme://host[:port])')
    return value


class AccountConfig(Model):
    secret_id_env: EnvName | None = None
    secret_id_file: Path | None = None
    secret_id: Secret | None = None
    secret_key_env: EnvName | None = None
    secret_key_file: Path | None = None
    secret_key: Secret | None = None
    token_env: EnvName | None = None
    token_file: Path | None = None
    token: Secret | None = None
    # Which Tencent Cloud site the account is on: its default access host and the regions its
    # tasks may use (monitor/trtc/sites.py).
    site: Literal["international", "china"] = DEFAULT_SITE.value
    # Filled in from the site when not given (``_endpoint_of_site``); a given one wins.
    endpoint: Annotated[str, AfterValidator(check_endpoint)] = DEFAULT_ENDPOINT
    language: Literal["en-US", "zh-CN"] = "en-US"
    rate_limit: PositiveInt = 20
    rate_window: Duration = 1.0
    rate_guard: Fraction = 0.02
    # Where the credentials come from: one source, or "auto" for the chain in CREDENTIAL_MODES.
    credentials: Literal["auto", "static", "env", "profile", "oidc", "cvm_role"] = "auto"
    profile: Name = "default"
    role_arn: Annotated[str, AfterValidator(_check_role_arn)] = ""
    role_session_name: Annotated[str, AfterValidator(_check_session_name)] = "trtc-monitor"
    role_duration: Annotated[Duration, AfterValidator(_check_role_duration)] = 7200.0
    sts_endpoint: Annotated[str, AfterValidator(check_endpoint)] = "sts.tencentcloudapi.com"
    metadata_endpoint: Annotated[str, AfterValidator(_check_metadata_endpoint)] = (
        "http://metadata.tencentyun.com"
    )

    @model_validator(mode="before")
    @classmethod
    def _endpoint_of_site(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("endpoint") is None:
            try:
                host = site_info(data.get("site", DEFAULT_SITE)).default_host
            except (ValueError, TypeError):
                return data  # the site's own check names the problem
            data = {**data, "endpoint": host}
        return data

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions the account's site serves cloud recording in."""
        return site_info(self.site).regions

    @field_validator("rate_guard")
    @classmethod
    def _guard_range(cls, value: float) -> float:
        if not 0 <= value <= 0.5:
            raise ValueError("rate_guard must be between 0% and 50%")
        return value

    @model_validator(mode="after")
    def _single_sources(self) -> Self:
        problems = [p for base in _STATIC_DEFAULTS for p in source_problems(self, base)]
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
            raise LocatedErrors(problems)
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
        return self._static_source(name, "secret_id")

    def secret_key_source(self, name: str) -> SecretSource:
        return self._static_source(name, "secret_key")

    def token_source(self, name: str) -> SecretSource:
        """Where the session token is read from. The token is optional: permanent credentials
        have none, so an unset variable or a missing file means "no token"."""
        return self._static_source(name, "token")

    def _static_source(self, name: str, base: str) -> SecretSource:
        key = f"accounts.{name}.{base}"
        return secret_source_or_env(self, base, key, _STATIC_DEFAULTS[base])
