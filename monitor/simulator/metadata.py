"""The CVM instance metadata service's credentials path, as the simulator serves it.

    GET /latest/meta-data/cam/security-credentials/          the bound role's name (404: none)
    GET /latest/meta-data/cam/security-credentials/{role}    that role's temporary credentials

Faults naming the action ``MetadataCredentials`` apply here: latency, a hold past the
client's timeout, a dropped connection, an HTTP error, a malformed body; the error kinds answer
HTTP 500, since this service has no error envelope.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.simulator.faults import FaultKind
from monitor.simulator.sts import METADATA, metadata_document

if TYPE_CHECKING:
    from monitor.simulator.server import Simulator

CREDENTIALS_PATH = "/latest/meta-data/cam/security-credentials/"


def add_metadata_routes(app: web.Application, sim: Simulator) -> None:
    async def faulted(request: web.Request) -> web.StreamResponse | None:
        decision = sim.faults.decide(METADATA, "")
        if decision.delayed_by:
            await sim.pause(decision.delay)
        fault = decision.fault
        if fault is None:
            return None
        if fault.kind is FaultKind.TIMEOUT:
            await sim.pause(fault.hold)
            return sim.drop(request)
        if fault.kind is FaultKind.DROP:
            return sim.drop(request)
        if fault.kind is FaultKind.HTTP_ERROR:
            return web.Response(status=fault.status, text=f"{fault.status}\n")
        if fault.kind is FaultKind.MALFORMED:
            return web.Response(text="<html>not the metadata service</html>")
        return web.Response(status=500, text="500 Internal Server Error\n")

    async def role_name(request: web.Request) -> web.StreamResponse:
        broken = await faulted(request)
        if broken is not None:
            return broken
        role = sim.issuer.metadata_role
        if role is None:
            return web.Response(status=404, text="404 - Not Found\n")
        return web.Response(text=role)

    async def role_credentials(request: web.Request) -> web.StreamResponse:
        broken = await faulted(request)
        if broken is not None:
            return broken
        role = request.match_info["role"]
        if sim.issuer.metadata_role is None or role != sim.issuer.metadata_role:
            return web.Response(status=404, text="404 - Not Found\n")
        clock = sim.clock
        cred = sim.issuer.metadata_credentials(role, clock.time(), clock.monotonic())
        return web.Response(text=json.dumps(metadata_document(cred)), content_type="text/plain")

    app.router.add_get(CREDENTIALS_PATH, role_name)
    app.router.add_get(CREDENTIALS_PATH + "{role}", role_credentials)
