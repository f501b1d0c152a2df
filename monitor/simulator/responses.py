"""How the simulator's server writes an answer: the JSON envelope, or an injected fault acted
out as the real service's failures look on the wire (gateway HTML pages, cut connections,
malformed bodies, error codes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from monitor.simulator.arrivals import Arrival
from monitor.simulator.faults import Fault, FaultKind
from monitor.simulator.protocol import (
    CONTENT_TYPE,
    ApiError,
    error_envelope,
    message_for,
    request_id,
    throttle_message,
)

__all__ = ["act_out", "drop", "json_response"]

_HTML_ERRORS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def _html_error(status: int) -> str:
    reason = _HTML_ERRORS.get(status, "Error")
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>stgw</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def _malformed_body(kind: str, rid: str) -> bytes:
    if kind == "no_response":
        return f'{{"RequestId": "{rid}", "Status": "InProgress"}}'.encode()
    if kind == "truncated":
        return f'{{"Response": {{"TaskId": "task-", "RequestId": "{rid}'.encode()
    return _html_error(502).encode()


def json_response(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def drop(request: web.Request) -> web.StreamResponse:
    """End the connection without an answer."""
    # Closing the transport first makes aiohttp's write of the response fail quietly, so
    # the client sees the connection end with no answer at all.
    if request.transport is not None:
        request.transport.close()
    return web.Response()


async def act_out(
    request: web.Request,
    fault: Fault,
    arrival: Arrival,
    count: int,
    rate_limit: int,
    pause: Callable[[float], Awaitable[None]],
) -> web.StreamResponse:
    """Answer ``request`` as ``fault`` says, noting on ``arrival`` what it got.

    ``count`` is the request's place in the rate window (a throttle message names it);
    ``pause`` holds the request (ending early when the server stops).
    """
    kind = fault.kind
    if kind is FaultKind.TIMEOUT:
        arrival.code = "!timeout"
        await pause(fault.hold)
        return drop(request)
    if kind is FaultKind.DROP:
        arrival.code = "!drop"
        return drop(request)
    if kind is FaultKind.HTTP_ERROR:
        arrival.code = f"!http_{fault.status}"
        return web.Response(
            status=fault.status, text=_html_error(fault.status), content_type="text/html"
        )
    rid = request_id()
    if kind is FaultKind.MALFORMED:
        arrival.code = "!malformed"
        return json_response(_malformed_body(fault.body, rid))
    code = fault.error_code
    if kind is FaultKind.THROTTLE:
        message = fault.message or throttle_message(max(count, rate_limit + 1), rate_limit)
    else:
        message = fault.message or message_for(code)
    arrival.code = code
    return json_response(error_envelope(ApiError(code, message), rid))
