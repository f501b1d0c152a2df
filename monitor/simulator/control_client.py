"""A small async client of the simulator's control surface (:mod:`monitor.simulator.control`),
for driving a simulator in another process."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import aiohttp

__all__ = ["PREFIX", "ControlError", "SimulatorControl"]

PREFIX = "/-/sim"


class ControlError(Exception):
    """The control surface refused a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class SimulatorControl:
    """Async client of the control surface of a simulator at ``base_url``."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> SimulatorControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        url = f"{self.base_url}{PREFIX}{path}"
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self._session.request(
            method, url, data=data, headers=headers, params=params
        ) as resp:
            payload = await resp.json(content_type=None)
            if resp.status >= 400:
                message = payload.get("error", {}).get("message", "") if payload else ""
                raise ControlError(resp.status, message)
            return payload

    async def add_task(self, sdk_app_id: int, task_id: str | None = None, **spec: Any) -> str:
        """Add a task; ``spec`` takes the scenario task keys (idle, in_progress, ...)."""
        body: dict[str, Any] = {"sdk_app_id": sdk_app_id, **spec}
        if task_id is not None:
            body["task_id"] = task_id
        result = await self._call("POST", "/tasks", body)
        return str(result["task_id"])

    async def exit_task(self, sdk_app_id: int, task_id: str, leave_code: int = 3) -> bool:
        body = {"sdk_app_id": sdk_app_id, "task_id": task_id, "leave_code": leave_code}
        return bool((await self._call("POST", "/tasks/exit", body))["changed"])

    async def end_task(self, sdk_app_id: int, task_id: str, leave_code: int = 3) -> bool:
        body = {"sdk_app_id": sdk_app_id, "task_id": task_id, "leave_code": leave_code}
        return bool((await self._call("POST", "/tasks/end", body))["changed"])

    async def set_upload(self, sdk_app_id: int, task_id: str, **upload: Any) -> dict[str, Any]:
        """Change how a task's upload goes from now on; ``upload`` takes the scenario's upload
        keys (mp4, upload_failure, upload_error_code, upload_error_message, upload_finish,
        upload_recover_after)."""
        body = {"sdk_app_id": sdk_app_id, "task_id": task_id, **upload}
        return cast(dict[str, Any], (await self._call("POST", "/tasks/upload", body))["task"])

    async def task(self, sdk_app_id: int, task_id: str) -> dict[str, Any]:
        params = {"sdk_app_id": str(sdk_app_id), "task_id": task_id}
        return cast(dict[str, Any], await self._call("GET", "/tasks", params=params))

    async def tasks(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], (await self._call("GET", "/tasks"))["tasks"])

    async def add_fault(self, kind: str, **fields: Any) -> int:
        return int((await self._call("POST", "/faults", {"kind": kind, **fields}))["id"])

    async def remove_fault(self, fault_id: int) -> None:
        await self._call("DELETE", f"/faults/{fault_id}")

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def faults(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("GET", "/faults"))

    async def stats(
        self,
        window: float = 1.0,
        secret_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """Arrival statistics; ``since``/``until`` bound them in wall-clock seconds."""
        params = {"window": str(window)}
        if secret_id is not None:
            params["secret_id"] = secret_id
        if since is not None:
            params["since"] = repr(since)
        if until is not None:
            params["until"] = repr(until)
        return cast(dict[str, Any], await self._call("GET", "/stats", params=params))

    async def arrivals(
        self, action: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Each arrival (``mono``, ``wall``, ``action``, ``region``, ``task_id``, ``code``)."""
        params: dict[str, str] = {}
        if action is not None:
            params["action"] = action
        if since is not None:
            params["since"] = repr(since)
        answer = await self._call("GET", "/arrivals", params=params)
        return cast(list[dict[str, Any]], answer["arrivals"])

    async def reset_stats(self) -> None:
        await self._call("POST", "/stats/reset", {})

    async def issued_credentials(self) -> dict[str, Any]:
        """Temporary credentials issued so far (ids, kinds, roles, expiry; never a key)."""
        return cast(dict[str, Any], await self._call("GET", "/credentials"))

    async def settings(self, **changes: Any) -> dict[str, Any]:
        if changes:
            return cast(dict[str, Any], await self._call("PATCH", "/settings", changes))
        return cast(dict[str, Any], await self._call("GET", "/settings"))
