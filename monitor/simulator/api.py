"""The recording API on ``POST /``: the path every request takes through the simulator.

Record the arrival and count it -> injected faults -> STS actions -> action and version ->
TC3 verification -> strict rate limit -> region -> parameters -> the action on the task table
(:mod:`monitor.simulator.actions`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.simulator.actions import ACTIONS, Payload
from monitor.simulator.arrivals import Arrival
from monitor.simulator.faults import FaultKind
from monitor.simulator.protocol import (
    ApiError,
    SignedRequest,
    check_common,
    check_region,
    decode_params,
    envelope,
    error_envelope,
    request_id,
    throttle_message,
    verify,
)
from monitor.simulator.responses import act_out, json_response
from monitor.simulator.sts import STS_ACTIONS, answer_sts
from monitor.trtc.signing import parse_authorization

if TYPE_CHECKING:
    from monitor.simulator.server import Simulator

__all__ = ["add_api_routes"]


def add_api_routes(app: web.Application, sim: Simulator) -> None:
    async def api(request: web.Request) -> web.StreamResponse:
        return await handle(sim, request)

    app.router.add_post("/", api)


async def handle(sim: Simulator, request: web.Request) -> web.StreamResponse:
    """One request to the API, as the service would answer it."""
    clock = sim.clock
    mono = clock.monotonic()
    wall = clock.time()
    body = await request.read()
    headers = request.headers
    action = sys.intern(headers.get("X-TC-Action", ""))
    region = sys.intern(headers.get("X-TC-Region", ""))
    auth = parse_authorization(headers.get("Authorization", ""))
    secret_id = sys.intern(auth.secret_id) if auth is not None else ""
    params = decode_params(body)
    raw_task = params.get("TaskId") if params is not None else None
    task_id = raw_task if isinstance(raw_task, str) else ""
    arrival = sim.arrivals.record(Arrival(mono, wall, secret_id, action, region, task_id))
    count = sim.count_request(secret_id, action, mono)

    decision = sim.faults.decide(action, task_id)
    if decision.delayed_by:
        arrival.fault = FaultKind.LATENCY.value
        await sim.pause(decision.delay)
    if decision.fault is not None:
        arrival.fault = decision.fault.kind.value
        return await act_out(request, decision.fault, arrival, count, sim.rate_limit, sim.pause)

    rid = request_id()
    signed = SignedRequest(
        auth=auth,
        timestamp=headers.get("X-TC-Timestamp", ""),
        host=headers.get("Host", ""),
        content_type=headers.get("Content-Type", ""),
        body=body,
        token=headers.get("X-TC-Token", ""),
    )
    if action in STS_ACTIONS:
        answer, issued = answer_sts(
            action,
            headers.get("X-TC-Version", ""),
            signed,
            params,
            sim.issuer,
            sim.accepted_keys,
            sim.accepted_tokens,
            wall + sim.clock_skew,
            mono,
        )
        if issued is not None:
            issued.answered_mono = clock.monotonic()
        if isinstance(answer, ApiError):
            arrival.code = answer.code
            return json_response(error_envelope(answer, rid))
        return json_response(envelope(answer, rid))
    result = answer_recording(
        sim, action, headers.get("X-TC-Version", ""), region, signed, params, wall, count
    )
    if isinstance(result, ApiError):
        arrival.code = result.code
        return json_response(error_envelope(result, rid))
    return json_response(envelope(result, rid))


def answer_recording(
    sim: Simulator,
    action: str,
    version: str,
    region: str,
    signed: SignedRequest,
    params: Payload | None,
    wall: float,
    count: int,
) -> Payload | ApiError:
    """The answer to a recording action once no fault was injected: the checks every request
    passes, in the service's order, then the action itself."""
    err = check_common(action, version)
    if err is not None:
        return err
    now = wall + sim.clock_skew
    err = verify(signed, sim.accepted_keys, sim.accepted_tokens, now)
    if err is not None:
        return err
    if signed.auth is not None and sim.issuer.expired(signed.auth.secret_id, now):
        return ApiError.of("AuthFailure.TokenFailure")
    if count > sim.rate_limit:
        sim.arrivals.limited += 1
        return ApiError("RequestLimitExceeded", throttle_message(count, sim.rate_limit))
    err = check_region(region, signed.host, action, sim.default_site)
    if err is not None:
        return err
    if params is None:
        return ApiError("InvalidParameter", "The request body is not a JSON object.")
    return ACTIONS[action](sim.table, params, sim.clock.monotonic(), sim)
