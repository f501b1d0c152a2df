"""`simulate` and `demo`: the built-in TRTC simulator, alone or with the daemon."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from monitor.cli.common import EXIT_OK, UserError


def cmd_simulate(args: argparse.Namespace) -> int:
    from monitor.simulator import ScenarioError

    try:
        asyncio.run(_simulate(args.listen, Path(args.scenario) if args.scenario else None))
    except (ScenarioError, ValueError, OSError) as exc:
        raise UserError(f"simulate: {exc}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _simulate(listen: str, scenario: Path | None) -> None:
    import signal

    from monitor.simulator import serve

    server = asyncio.ensure_future(serve(listen, scenario))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo
    from monitor.demo_ha import run_ha_demo

    try:
        if args.replicas > 1:
            return asyncio.run(run_ha_demo(args))
        return asyncio.run(run_demo(args))
    except KeyboardInterrupt:
        return EXIT_OK
