"""What every command shares: defaults, exit codes, the user's error and the config path."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

DEFAULT_CONFIG = "config/monitor.yaml"
DEFAULT_URL = "http://127.0.0.1:9877"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code

    @property
    def lines(self) -> Sequence[str]:
        """What is printed, one ``error:`` line each."""
        return [str(self)]


class InvalidConfig(UserError):
    """The configuration file has errors: each printed on its own line, exit 2."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)

    @property
    def lines(self) -> Sequence[str]:
        return self.errors


def checked_config(load: Callable[[Path], T], path: Path) -> T:
    """``load(path)``: a configuration with errors raises :class:`InvalidConfig`."""
    from monitor.config import ConfigError

    try:
        return load(path)
    except ConfigError as exc:
        raise InvalidConfig(exc.errors) from None


def config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("TRTC_MONITOR_CONFIG") or DEFAULT_CONFIG)


def print_errors(errors: Sequence[str]) -> None:
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
