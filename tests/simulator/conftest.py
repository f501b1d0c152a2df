"""Fixtures of the simulator's tests: a manual clock, a started simulator, a client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from monitor.simulator import ManualClock, Simulator
from tests.simulator.helpers import Client, Receiver


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    s = Simulator(clock=clock, seed=1)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def client(sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock) -> Client:
    return Client(session, sim.url, clock=clock.time)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
    status = [200]

    async def handle(request: web.Request) -> web.Response:
        received.put_nowait((dict(request.headers), await request.read()))
        return web.Response(status=status[0])

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Receiver(f"http://127.0.0.1:{port}/cb", received, status)
    await runner.cleanup()
