"""A simulator on its own event loop in a background thread.

For synchronous clients such as the official SDK's ``TrtcClient``, and for users' own
synchronous integration tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from monitor.simulator.server import Simulator

T = TypeVar("T")


class ThreadedSimulator:
    """``with ThreadedSimulator(Simulator(...)) as url: ...``

    The simulator's own methods must run on its loop: use ``call(fn, *args)`` for them from
    other threads (plain attribute assignments such as ``clock_skew`` are safe directly).
    """

    def __init__(self, sim: Simulator | None = None, host: str = "127.0.0.1", port: int = 0):
        self.sim = sim if sim is not None else Simulator()
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        if self._loop is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name="trtc-simulator")
        self._loop, self._thread = loop, thread
        thread.start()
        future = asyncio.run_coroutine_threadsafe(self.sim.start(self._host, self._port), loop)
        try:
            self.url = future.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.sim.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the simulator's loop and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("not started")

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
