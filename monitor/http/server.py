"""The aiohttp application and its runner."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from aiohttp import web
from multidict import CIMultiDict

from monitor.http import api, callbacks, status_page
from monitor.http.errors import Handler, error_response, json_errors
from monitor.http.openapi import openapi_document
from monitor.http.ports import HttpContext
from monitor.http.status_page import StatusSource
from monitor.http.status_source import ComponentStatusSource, StatusParts
from monitor.http.throttled_log import ThrottledWarning
from monitor.http.webconfig import LiveWebConfig
from monitor.metrics import Exposition

log = structlog.get_logger("monitor.http")

NOSNIFF = ("X-Content-Type-Options", "nosniff")
# Clients that must send both basic auth and the API token may put the token here.
TOKEN_HEADER = "X-API-Token"  # noqa: S105 - a header name
AUTH_FAILURE_LOG_EVERY = 60.0


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


def security_headers(
    extra: Callable[[], Mapping[str, str]],
) -> Callable[[web.Request, web.StreamResponse], Any]:
    """Headers on every answer, errors and streamed ones included (set when the headers go
    out, so a handler that prepares its own response gets them too)."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in extra().items():
            response.headers[name] = value
        response.headers[NOSNIFF[0]] = NOSNIFF[1]

    return on_prepare


class AuthFailures:
    """Counts refused logins and logs them at most once a minute, never with credentials."""

    def __init__(self, count: Callable[[str], None] | None = None) -> None:
        self._count = count
        self._log = ThrottledWarning(log, "http_basic_auth_failed", AUTH_FAILURE_LOG_EVERY)

    def __call__(self, request: web.Request, reason: str) -> None:
        if self._count is not None:
            self._count(reason)
        self._log.refused(reason=reason, path=request.path, remote=request.remote)


def basic_auth(web_config: LiveWebConfig, failures: AuthFailures) -> Callable[..., Any]:
    """Every path behind the users of the web configuration file (when it names any).

    The credentials are taken out of the request before it goes on, so the API token check
    of mutating calls sees only what is left: a second ``Authorization`` header, or the token
    sent in ``X-API-Token``.
    """

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        config = web_config.current
        if not config.users:
            return await handler(request)
        values = request.headers.getall("Authorization", [])
        offered = [v for v in values if v.strip()[:6].lower() == "basic "]
        if not offered:
            failures(request, "missing")
            return _unauthorized()
        if len(offered) > 1 or not await web_config.auth.check(config, offered[0]):
            failures(request, "invalid")
            return _unauthorized()
        headers = CIMultiDict(request.headers)
        headers.popall("Authorization")
        for value in values:
            if value is not offered[0]:
                headers.add("Authorization", value)
        token = headers.popall(TOKEN_HEADER, [])
        if token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {token[0].strip()}"
        return await handler(request.clone(headers=headers))

    return guard


def _unauthorized() -> web.Response:
    return error_response(
        401,
        "authentication required (basic auth, as the web configuration file says)",
        headers={"WWW-Authenticate": 'Basic realm="trtc-monitor"'},
    )


def _no_headers() -> Mapping[str, str]:
    return {}


def build_app(
    context: HttpContext,
    callback_path: str | None,
    status: StatusSource | None = None,
    *,
    web_config: LiveWebConfig | None = None,
    auth_failures: AuthFailures | None = None,
) -> web.Application:
    """The application; ``callback_path`` None leaves the callback endpoint out, ``status``
    None the status page, ``web_config`` None basic auth and extra headers."""
    middlewares: list[Any] = []
    if web_config is not None:
        middlewares.append(basic_auth(web_config, auth_failures or AuthFailures()))
    middlewares.append(json_errors)
    app = web.Application(middlewares=middlewares, client_max_size=context.max_body_bytes)
    app.on_response_prepare.append(security_headers(_headers_of(web_config)))
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


def build_callback_app(
    context: HttpContext, callback_path: str, web_config: LiveWebConfig | None = None
) -> web.Application:
    """The callback listener: the callback path and nothing else (every other path 404)."""
    app = web.Application(middlewares=[json_errors], client_max_size=context.max_body_bytes)
    app.on_response_prepare.append(security_headers(_headers_of(web_config)))
    app[api.CONTEXT] = context
    callbacks.add_routes(app, callback_path, context)
    return app


def _headers_of(web_config: LiveWebConfig | None) -> Callable[[], Mapping[str, str]]:
    if web_config is None:
        return _no_headers
    return lambda: web_config.current.headers


class ListenError(OSError):
    """An address that cannot be listened on; the message names it (an OSError, as what
    aiohttp raised before binding moved here)."""


def bind(listen: str) -> socket.socket:
    """A listening socket on ``listen`` (host:port, port 0 = any), bound now."""
    host, port = split_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {listen}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(512)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise ListenError(f"cannot listen on {listen}: {reason}") from None
    return sock


def base_url(sock: socket.socket, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class Served(StatusParts, Protocol):
    """What a server is started for: its context, where the callback endpoint goes, and the
    components the status page reads."""

    def http_context(self) -> HttpContext: ...

    @property
    def callback_path(self) -> str | None: ...


async def serve(
    app: web.Application, sock: socket.socket, web_config: LiveWebConfig | None = None
) -> web.AppRunner:
    """Serve ``app`` on an already bound socket (HTTPS when the web configuration says so)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    context = None if web_config is None else web_config.ssl_context()
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    return runner


async def start_server(served: Served, listen: str) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner and the base URL actually bound (port 0 allowed)."""
    sock = bind(listen)
    app = build_app(served.http_context(), served.callback_path, ComponentStatusSource(served))
    return await serve(app, sock), base_url(sock)
