"""JSON errors and the middleware that guarantees no request ever gets a 500 page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from monitor.store.base import StoreError

log = structlog.get_logger("monitor.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}

# Headers of aiohttp's own errors that a client needs to act on (405 says what is allowed).
_KEPT_HEADERS = ("Allow",)


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> web.Response:
    """``{"error": {"code", "message", ...details}}``: ``details`` adds what a client acts on
    (the fields in conflict, the items refused by index)."""
    error = {**(details or {}), "code": code or _CODES.get(status, "error"), "message": message}
    return web.json_response({"error": error}, status=status, headers=headers)


class ApiError(Exception):
    """Raised by handlers; becomes a JSON error with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})
        self.details = dict(details or {})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.code, exc.headers, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        if exc.status == 413:
            return error_response(
                413, f"request body is larger than {request.client_max_size} bytes", headers=kept
            )
        return error_response(exc.status, exc.reason, headers=kept)
    except StoreError as exc:
        # Nothing changed (the store is written first): the caller may simply retry, and TRTC
        # re-delivers a callback that was not acknowledged.
        log.error("store_unavailable", path=request.path, method=request.method, error=str(exc))
        return error_response(
            503,
            "the monitor cannot write its store right now; nothing was changed, retry later",
            "store_unavailable",
            {"Retry-After": "5"},
        )
    except Exception:
        # Never a 500 page with details: log it (without locals) and answer plainly.
        log.exception("http_handler_failed", path=request.path, method=request.method)
        return error_response(500, "internal error; see the daemon's log", "internal")
