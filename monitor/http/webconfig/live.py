"""The file in force for one listener: re-read on reload and when its files change."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from monitor.http.webconfig.auth import BasicAuth
from monitor.http.webconfig.file import load_web_config
from monitor.http.webconfig.settings import WebConfig, WebConfigError
from monitor.http.webconfig.tls import build_context, tune

log = structlog.get_logger("monitor.http.webconfig")

WATCH_SECONDS = 1.0


def _identity(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int, int] | None, ...]:
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class LiveWebConfig:
    """The file in force for one listener, re-read on reload and when its files change."""

    def __init__(
        self,
        name: str,
        path: Path | None,
        *,
        basic_auth_allowed: bool = True,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.basic_auth_allowed = basic_auth_allowed
        self.current = WebConfig()
        self.auth = BasicAuth()
        self._on_failure = on_failure
        self._base: ssl.SSLContext | None = None
        self._stamp: tuple[tuple[int, int, int, int] | None, ...] = ()
        self._failed_stamp: object = None
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._watch_period: float | None = None  # set once serving: watch files named later

    @property
    def tls(self) -> bool:
        return self._base is not None

    async def read(self, path: Path | None) -> tuple[WebConfig, tuple[Any, ...]]:
        """Load ``path`` in a thread; WebConfigError when it cannot be used."""

        def work() -> tuple[WebConfig, tuple[Any, ...]]:
            config = load_web_config(path, basic_auth_allowed=self.basic_auth_allowed)
            return config, _identity(config.watched())

        return await asyncio.to_thread(work)

    async def load(self) -> None:
        """The first read, at start: fixes whether this listener speaks TLS."""
        config, stamp = await self.read(self.path)
        self.current, self._stamp = config, stamp
        if config.context is not None and config.tls is not None:
            self._base = build_context(config.tls, str(config.path))
            self._base.sni_callback = self._pick_context

    def ssl_context(self) -> ssl.SSLContext | None:
        """The listening socket's context (None: plain HTTP). Fixed for the process's life;
        each handshake is handed the newest context by the SNI callback."""
        return self._base

    def _pick_context(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        newest = self.current.context
        if newest is not None and connection.context is not newest:
            connection.context = newest

    async def prepare(self, path: Path | None) -> Callable[[], None]:
        """Read and check ``path`` for a reload; the returned call puts it in force."""
        config, stamp = await self.read(path)
        self._check_switch(config)
        return lambda: self._apply(path, config, stamp)

    def _check_switch(self, config: WebConfig) -> None:
        if (config.context is not None) != self.tls:
            state = "on" if self.tls else "off"
            raise WebConfigError(
                f"{config.path or 'no web configuration file'}: TLS was {state} when the "
                f"{self.name} listener started; turning it on or off takes a restart"
            )

    def _apply(self, path: Path | None, config: WebConfig, stamp: tuple[Any, ...]) -> None:
        # Settings copied into each new connection go on the listening context; the
        # certificate and the client CAs come with the context the SNI callback hands over.
        if self._base is not None and config.tls is not None:
            tune(self._base, config.tls)
        changed = config != self.current
        self.path, self.current, self._stamp = path, config, stamp
        self._failed_stamp = None
        if self._watch_period is not None:
            self.start_watching(self._watch_period)
        if changed:
            log.info(
                "web_config_loaded",
                listener=self.name,
                path=str(path) if path else None,
                tls=config.tls is not None,
                users=len(config.users),
            )

    async def reload(self) -> str | None:
        """Re-read the current path now; the error (and the old file stays) or None."""
        async with self._lock:
            try:
                commit = await self.prepare(self.path)
            except WebConfigError as exc:
                self.failed(str(exc))
                return str(exc)
            commit()
            return None

    def failed(self, error: str) -> None:
        log.error("web_config_reload_failed", listener=self.name, error=error)
        if self._on_failure is not None:
            self._on_failure(self.name)

    def start_watching(self, period: float = WATCH_SECONDS) -> None:
        self._watch_period = period
        if self.path is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(period))

    async def _watch(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                stamp = await asyncio.to_thread(_identity, self.current.watched())
                if stamp == self._stamp or stamp == self._failed_stamp:
                    continue
                error = await self.reload()
                if error is not None:
                    # Logged and counted once per broken state, not once a second.
                    self._failed_stamp = stamp
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watcher die quietly
                log.exception("web_config_watch_failed", listener=self.name)
                await asyncio.sleep(period)

    async def stop(self) -> None:
        self._watch_period = None
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
