"""`trtc-monitor` command line (README.md, "Commands").

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. User errors print one
line each and no traceback. Heavy imports happen inside the commands that need them, and the
run path never imports the simulator.

The commands live in modules of their own: ``parser`` (every option), ``run`` (``run``,
``check-config``, ``version``), ``accounts`` (``describe``, ``credentials``), ``local``
(``simulate``, ``demo``), ``tasks`` (the API client) and ``store`` (``store copy``).
"""

from __future__ import annotations

import contextlib
import os
import sys

from monitor.cli.common import EXIT_FAILURE, EXIT_OK, UserError, print_errors
from monitor.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def _stdout_gone() -> int:
    """The reader of our output went away (``trtc-monitor tasks list | head -1``): what is
    left has nowhere to go, which is no failure. Quietly: stdout now points at /dev/null, so
    the interpreter's last flush has nothing to complain about either."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code: int = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        return _stdout_gone()
    except UserError as exc:
        print_errors(exc.lines)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return code
