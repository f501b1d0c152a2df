"""What every command shares: defaults, exit codes, the user's error and the config path."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CONFIG = "config/monitor.yaml"
DEFAULT_URL = "http://127.0.0.1:9877"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("TRTC_MONITOR_CONFIG") or DEFAULT_CONFIG)


def print_errors(errors: Sequence[str]) -> None:
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
