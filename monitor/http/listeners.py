"""The daemon's listeners: the main one, and the callback one when ``callbacks.listen`` is set.

Every address is bound before anything else happens (``bind``), so a port that is taken stops
the start before the store is opened or anything polled. Each listener has its web
configuration file (:mod:`monitor.http.webconfig`), read at start, on every reload and when
it changes on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from monitor.config import Config, ConfigError
from monitor.http.server import (
    AuthFailures,
    Served,
    base_url,
    bind,
    build_app,
    build_callback_app,
    serve,
)
from monitor.http.status_source import ComponentStatusSource
from monitor.http.webconfig import LiveWebConfig, WebConfigError

MAIN, CALLBACKS = "main", "callbacks"
SHUTDOWN_SECONDS = 3.0


class WebMetrics:
    """The listeners' own series, registered on the daemon's instrumentation registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.auth_failures = Counter(
            "trtc_monitor_http_basic_auth_failures_total",
            "Requests refused by the basic auth of the web configuration file, by reason "
            "(missing: no credentials; invalid: unknown user or wrong password).",
            ["reason"],
            registry=registry,
        )
        self.reload_failures = Counter(
            "trtc_monitor_web_config_reload_failures_total",
            "Web configuration files refused on reload or on change (the old one stays).",
            ["listener"],
            registry=registry,
        )
        for reason in ("missing", "invalid"):
            self.auth_failures.labels(reason)


class Listeners:
    """Binds, serves and reconfigures the listeners of one daemon."""

    def __init__(
        self,
        config: Config,
        web_config_flag: Path | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._flag = web_config_flag
        self.metrics = WebMetrics(registry)
        self.main_listen = config.server.listen
        self.callback_listen = config.callbacks.listen
        fail = self.metrics.reload_failures
        self.main = LiveWebConfig(
            MAIN, self.main_path(config), on_failure=lambda name: fail.labels(name).inc()
        )
        for name in (MAIN, CALLBACKS):
            fail.labels(name)
        self.callbacks: LiveWebConfig | None = None
        if self.callback_listen is not None:
            self.callbacks = LiveWebConfig(
                CALLBACKS,
                config.callbacks.web_config_file,
                basic_auth_allowed=False,
                on_failure=lambda name: fail.labels(name).inc(),
            )
        self._sockets: dict[str, socket.socket] = {}
        self._runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}

    def main_path(self, config: Config) -> Path | None:
        return self._flag if self._flag is not None else config.server.web_config_file

    # ------------------------------------------------------------------ start

    def bind(self) -> None:
        """Bind every address now; ListenError (naming the address) when one is taken."""
        try:
            self._sockets[MAIN] = bind(self.main_listen)
            if self.callback_listen is not None:
                self._sockets[CALLBACKS] = bind(self.callback_listen)
        except BaseException:
            self.close()
            raise

    async def load(self) -> None:
        """Read the web configuration files; WebConfigError when one cannot be used."""
        await self.main.load()
        if self.callbacks is not None:
            await self.callbacks.load()

    async def start(self, served: Served) -> None:
        """Serve the daemon on the bound sockets and watch the web configuration files."""
        context = served.http_context()
        path = served.callback_path
        apart = self.callbacks is not None
        failures = AuthFailures(lambda reason: self.metrics.auth_failures.labels(reason).inc())
        main = build_app(
            context,
            None if apart else path,
            ComponentStatusSource(served),
            web_config=self.main,
            auth_failures=failures,
        )
        self._runners.append(await serve(main, self._sockets[MAIN], self.main))
        self.urls[MAIN] = base_url(self._sockets[MAIN], self.main.tls)
        self.main.start_watching()
        if self.callbacks is not None and path is not None:
            app = build_callback_app(context, path, self.callbacks)
            sock = self._sockets[CALLBACKS]
            self._runners.append(await serve(app, sock, self.callbacks))
            self.urls[CALLBACKS] = base_url(sock, self.callbacks.tls) + path
            self.callbacks.start_watching()

    # ------------------------------------------------------------------ reload

    async def prepare(self, config: Config) -> Callable[[], None]:
        """Read the files a new configuration names; ConfigError (nothing changed) when one
        cannot be used. The returned call puts them in force."""
        files: list[tuple[LiveWebConfig, Path | None]] = [(self.main, self.main_path(config))]
        if self.callbacks is not None:
            files.append((self.callbacks, config.callbacks.web_config_file))
        commits = []
        for live, path in files:
            try:
                commits.append(await live.prepare(path))
            except WebConfigError as exc:
                live.failed(str(exc))
                raise ConfigError([str(exc)]) from None

        def commit() -> None:
            for one in commits:
                one()

        return commit

    # ------------------------------------------------------------------ stop

    def close(self) -> None:
        for sock in self._sockets.values():
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets.clear()

    async def stop(self) -> bool:
        """Stop serving; False when the HTTP shutdown took longer than a few seconds."""
        await self.main.stop()
        if self.callbacks is not None:
            await self.callbacks.stop()
        clean = True
        for runner in self._runners:
            try:
                await asyncio.wait_for(runner.cleanup(), timeout=SHUTDOWN_SECONDS)
            except TimeoutError:
                clean = False
        self._runners.clear()
        self.close()
        return clean
