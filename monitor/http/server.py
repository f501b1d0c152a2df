"""The aiohttp application and its runner."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from monitor.exposition import Exposition
from monitor.http import api, callbacks, status_page
from monitor.http.errors import json_errors
from monitor.http.openapi import openapi_document
from monitor.http.ports import HttpContext
from monitor.http.status_page import StatusSource
from monitor.http.status_source import ComponentStatusSource, StatusParts


def accepts_gzip(accept_encoding: str) -> bool:
    """True when the client lists gzip without refusing it (``gzip;q=0``)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def metrics(request: web.Request) -> web.StreamResponse:
    # Rendered in short slices on the loop from each task's kept text; compressed in a thread.
    rendered = await request.app[api.CONTEXT].metrics.render(request.headers.get("Accept"))
    headers = {"Content-Type": rendered.content_type, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=await Exposition.gzip(rendered), headers=headers)
    # Written part by part: one 20 MB join would hold the loop for milliseconds.
    response = web.StreamResponse(headers=headers)
    response.content_length = len(rendered)
    await response.prepare(request)
    if request.method != "HEAD":  # a HEAD answer has the headers only
        for part in rendered.parts:
            await response.write(part)
    await response.write_eof()
    return response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def ready(request: web.Request) -> web.Response:
    if not request.app[api.CONTEXT].control.ready:
        return web.Response(status=503, text="starting\n")
    return web.Response(text="ready\n")


async def reload(request: web.Request) -> web.Response:
    api.require_token(request)
    result = await request.app[api.CONTEXT].control.reload()
    if not result.ok:
        return web.json_response(
            {
                "error": {
                    "code": "reload_failed",
                    "message": "the configuration was rejected; the old one keeps running",
                    "errors": list(result.errors),
                }
            },
            status=422,
        )
    return web.json_response(
        {"status": "reloaded", "restart_required": list(result.restart_required)}
    )


async def alerts(request: web.Request) -> web.Response:
    records = request.app[api.CONTEXT].alerts.firing()
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
    return web.json_response(openapi_document(request.app[api.CONTEXT].control.account_names()))


def build_app(
    context: HttpContext, callback_path: str | None, status: StatusSource | None = None
) -> web.Application:
    """The application; ``callback_path`` None leaves the callback endpoint out, ``status``
    None the status page."""
    app = web.Application(middlewares=[json_errors], client_max_size=context.max_body_bytes)
    app[api.CONTEXT] = context
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/alerts", alerts)
    api.add_routes(app)
    if callback_path is not None:
        callbacks.add_routes(app, callback_path, context)
    if status is not None:
        status_page.add_routes(app, status)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class Served(StatusParts, Protocol):
    """What a server is started for: its context, where the callback endpoint goes, and the
    components the status page reads."""

    def http_context(self) -> HttpContext: ...

    @property
    def callback_path(self) -> str | None: ...


async def start_server(served: Served, listen: str) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner and the base URL actually bound (port 0 allowed)."""
    host, port = split_listen(listen)
    app = build_app(served.http_context(), served.callback_path, ComponentStatusSource(served))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
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
