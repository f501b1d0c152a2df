"""Scalar types of the configuration: durations, fractions, names, regions, listen
addresses, URLs, ``stale.after``, and the frozen base of every section model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
)
from pydantic_core import core_schema

from monitor.durations import SYNTAX_HINT, format_duration, parse_duration, parse_percent
from monitor.models import REGIONS
from monitor.secrets import shown_ref
from monitor.taskspec import LABEL_NAME_RE, RESERVED_LABELS
from monitor.trtc.client import HOST_RE, Endpoint

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def positive_seconds(value: object) -> float:
    return _seconds(value, allow_zero=False)


# A duration in Prometheus syntax or a plain number of seconds, stored as float seconds.
Duration = Annotated[float, BeforeValidator(positive_seconds)]
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


def check_http_url(value: str) -> str:
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


HttpURL = Annotated[str, AfterValidator(check_http_url)]


def check_external_url(value: str) -> str:
    return check_http_url(value) if value else value


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
            return cls(duration=positive_seconds(value))
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


def check_endpoint(value: str) -> str:
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


def check_listen(value: str) -> str:
    parse_listen(value)
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def non_negative_seconds(value: object) -> float:
    return _seconds(value, allow_zero=True)
