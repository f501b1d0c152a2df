"""The aiohttp application and its runner."""

from __future__ import annotations

import asyncio
import gzip
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from monitor.daemon import Daemon
from monitor.http import api, callbacks
from monitor.http.errors import json_errors
from monitor.http.openapi import openapi_document
from monitor.metrics import StateView

# One thread renders expositions: scrapes never run on the event loop, nor pile up threads.
_RENDER_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-render")


def accepts_gzip(accept_encoding: str) -> bool:
    """True when the client lists gzip without refusing it (``gzip;q=0``)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _render(
    daemon: Daemon, view: StateView, accept: str | None, gzipped: bool
) -> tuple[bytes, str]:
    body, content_type = daemon.metrics.render(view, accept)
    # Level 1: a large exposition shrinks about sevenfold for little CPU.
    return (gzip.compress(body, compresslevel=1) if gzipped else body), content_type


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[api.DAEMON]
    view = daemon.state_view()  # a cheap snapshot, taken on the loop
    gzipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    body, content_type = await asyncio.get_running_loop().run_in_executor(
        _RENDER_POOL, _render, daemon, view, request.headers.get("Accept"), gzipped
    )
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    return response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def ready(request: web.Request) -> web.Response:
    if not request.app[api.DAEMON].ready:
        return web.Response(status=503, text="starting\n")
    return web.Response(text="ready\n")


async def reload(request: web.Request) -> web.Response:
    api.require_token(request)
    ok = await request.app[api.DAEMON].reload()
    if not ok:
        return web.json_response(
            {
                "error": {
                    "code": "reload_failed",
                    "message": "the configuration was rejected; the old one keeps running "
                    "(see the daemon's log)",
                }
            },
            status=422,
        )
    return web.json_response({"status": "reloaded"})


async def alerts(request: web.Request) -> web.Response:
    records = request.app[api.DAEMON].alerts.firing()
    return web.json_response(
        {
            "alerts": [
                {
                    "alertname": r.alertname,
                    "state": r.state,
                    "labels": r.labels,
                    "annotations": r.annotations,
                    "starts_at": api.iso(r.starts_at),
                    "fingerprint": r.fingerprint,
                }
                for r in sorted(records, key=lambda r: (r.starts_at, r.fingerprint))
            ]
        }
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def build_app(daemon: Daemon) -> web.Application:
    app = web.Application(
        middlewares=[json_errors], client_max_size=daemon.config.server.max_body_bytes
    )
    app[api.DAEMON] = daemon
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/alerts", alerts)
    api.add_routes(app)
    if daemon.config.callbacks.enabled:
        callbacks.add_routes(app, daemon.config.callbacks.path)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def start_server(daemon: Daemon, listen: str) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner and the base URL actually bound (port 0 allowed)."""
    host, port = split_listen(listen)
    runner = web.AppRunner(build_app(daemon), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return runner, f"http://{shown}:{bound}"
