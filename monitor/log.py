"""Structured logging for the daemon and the libraries it uses, with secret redaction.

One processor chain renders both structlog events and plain ``logging`` records, so every
line has the same shape (JSON or console) and passes through the same redactor. The
redactor runs after exceptions have been turned into text or dicts: a secret inside an
exception message is hidden like any other. Tracebacks never include local variables.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
# Shorter values would shred ordinary words and numbers out of every line.
MIN_SECRET_LENGTH = 4

FORMATS = ("json", "console")
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class Redactor:
    """A processor that replaces every known secret in every string of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self._static: tuple[str, ...] = ()
        # Secrets that come and go while the daemon runs (temporary credentials), by owner.
        self._groups: dict[str, tuple[str, ...]] = {}
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Replace the set of secrets (on start and on every reload)."""
        self._static = tuple(secrets)
        self._compile()

    def update_group(self, group: str, secrets: Iterable[str]) -> None:
        """Replace the secrets of one owner (e.g. an account's temporary credentials), keeping
        every other set; an empty ``secrets`` drops the group."""
        values = tuple(secrets)
        if values:
            self._groups[group] = values
        else:
            self._groups.pop(group, None)
        self._compile()

    def _compile(self) -> None:
        everything = [*self._static, *(v for group in self._groups.values() for v in group)]
        values = sorted(
            {s for s in everything if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        # Longest first, so a secret that contains another one is hidden whole.
        # One assignment: a log call on another thread sees the old or the new set, never half.
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def redact(self, value: Any) -> Any:
        """``value`` with every secret replaced; containers are rebuilt, other objects
        become their ``repr`` (which is how the renderers would show them anyway)."""
        pattern = self._pattern
        if pattern is None:
            return value
        return _redact(value, pattern)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        pattern = self._pattern
        if pattern is None:
            return event_dict
        return {_redact(k, pattern): _redact(v, pattern) for k, v in event_dict.items()}


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {_redact(k, pattern): _redact(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(item, pattern) for item in value]
    return pattern.sub(REDACTED, repr(value))


# The one redactor of the process: handlers hold it, set_secrets() updates it in place.
_redactor = Redactor()


def set_secrets(values: Iterable[str]) -> None:
    """Replace the secrets hidden from every log line (e.g. after a configuration reload)."""
    _redactor.update(values)


def set_secret_group(group: str, values: Iterable[str]) -> None:
    """Replace the secrets of one owner as they change (temporary credentials are issued while
    the daemon runs); the configured secrets and other groups stay hidden."""
    _redactor.update_group(group, values)


def redact(value: Any) -> Any:
    """``value`` with the configured secrets hidden, for text that leaves by other paths."""
    return _redactor.redact(value)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _leading_keys_first(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    # Readers scan JSON lines left to right: the same four keys open every line.
    ordered = {k: event_dict[k] for k in _LEADING_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _final_processors(format: str, colors: bool) -> list[Processor]:
    if format == "json":
        return [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _redactor,
            _leading_keys_first,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        # Turn the traceback into plain text here, before redaction; left to the console
        # renderer it would be formatted after the redactor (and, with rich, with locals).
        structlog.processors.format_exc_info,
        _redactor,
        structlog.dev.ConsoleRenderer(colors=colors),
    ]


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second configure replaces it."""


def configure_logging(
    format: str = "json",
    level: str = "info",
    secrets: Iterable[str] = (),
    *,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging through one chain to ``stream`` (stderr).

    Safe to call again (tests, reload): the previous handler is replaced, not duplicated.
    """
    if format not in FORMATS:
        raise ValueError(f'unknown log format "{format}" (one of {", ".join(FORMATS)})')
    if level.lower() not in LEVELS:
        raise ValueError(f'unknown log level "{level}" (one of {", ".join(LEVELS)})')
    set_secrets(secrets)
    out = sys.stderr if stream is None else stream
    colors = format == "console" and out.isatty() and "NO_COLOR" not in os.environ

    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Loggers created before a reconfiguration must follow it.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=_final_processors(format, colors),
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    # These log every job run and every request at info; the daemon logs what matters itself.
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, LEVELS[level.lower()]))


QUIET_LOGGERS = ("apscheduler", "aiohttp.access")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger that goes through the configured chain."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
