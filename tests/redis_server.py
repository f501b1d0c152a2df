"""A real ``redis-server`` (Debian package) for tests: loopback only, a temp dir, a free port.

No persistence unless a test asks for AOF (``appendonly=True``), so a server costs a few
milliseconds to start and leaves nothing behind but its directory.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, require_binary

_START_TIMEOUT = 10.0


def _ping(port: int) -> bool:
    """One inline ``PING`` on a fresh connection; True on ``+PONG``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``start``/``stop``/``kill`` may be repeated (same port)."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self, binary: str) -> list[str]:
        command = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            command += ["--appendfsync", "everysec"]
        return command

    def start(self) -> None:
        """Start on a free port (the same one again after a stop) and wait for PING."""
        binary = require_binary("redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        fixed = self.port != 0
        for _attempt in range(5):
            if not fixed:
                self.port = free_port()
            process = subprocess.Popen(
                self._command(binary), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None:
                if _ping(self.port):
                    self._process = process
                    return
                time.sleep(0.01)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
            if fixed:
                # The port is in TIME_WAIT or taken by someone else meanwhile: keep trying it.
                time.sleep(0.2)
        log = self.directory / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}:\n{tail}")

    def stop(self) -> None:
        """Terminate and wait (SIGTERM: with AOF on, redis-server flushes it first)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """``kill -9``: what a crash looks like."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_redis(directory: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    """A started server, stopped at the end whatever happened."""
    server = RedisServer(directory, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` on a free loopback port for one test."""
    with running_redis(tmp_path / "redis") as server:
        yield server
