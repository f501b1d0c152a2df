"""The standalone simulator (``trtc-monitor simulate``): one server on HOST:PORT until cancelled."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

from monitor.simulator.scenario import Scenario, load_scenario
from monitor.simulator.server import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator

__all__ = ["serve"]


def _parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen: expected HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def serve(
    listen: str,
    scenario_path: Path | None,
    *,
    out: IO[str] | None = None,
) -> None:
    """Run a standalone simulator on ``listen`` (HOST:PORT) until cancelled.

    Prints where it listens and which credentials it accepts; a SecretKey is printed only
    for the built-in demo pair, never one from a scenario.
    """
    out = out or sys.stdout
    host, port = _parse_listen(listen)
    scenario = load_scenario(scenario_path) if scenario_path is not None else Scenario()
    sim = Simulator.from_scenario(scenario)
    url = await sim.start(host, port)
    try:
        print(f"TRTC simulator (API version 2019-07-22) listening on {url}", file=out)
        print(f"  control surface: {url}/-/sim/", file=out)
        print(
            f"  STS (AssumeRole, AssumeRoleWithWebIdentity) on POST {url}/; CVM metadata "
            f"credentials at {url}/latest/meta-data/cam/security-credentials/",
            file=out,
        )
        for secret_id in sim.credentials:
            if secret_id == DEFAULT_SECRET_ID and not scenario.credentials:
                key = f"SecretKey {DEFAULT_SECRET_KEY} (built-in demo pair)"
            else:
                key = "SecretKey from the scenario"
            print(f"  accepts SecretId {secret_id}, {key}", file=out)
        if sim.callback is not None:
            print(f"  callbacks to {sim.callback.url}", file=out)
        out.flush()
        await asyncio.Event().wait()
    finally:
        await sim.stop()
