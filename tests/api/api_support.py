"""What the task API tests share: the recorded answer and its checks (error shape, no secret),
the client that records them, and the simulator's arrivals of a task."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from monitor.simulator import DEFAULT_SECRET_KEY, Simulator
from tests.conftest import API_TOKEN, RunningDaemon

APP = 1400000001
DESCRIBE = "DescribeCloudRecording"
SECRETS = (API_TOKEN, DEFAULT_SECRET_KEY)
TOKEN_LINE = "  api_token_env: TEST_API_TOKEN\n"


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def message(self) -> str:
        message: str = self.json["error"]["message"]
        return message


def check_error_shape(answer: Answer) -> None:
    """Every 4xx is a JSON ``{"error": {"code", "message"}}``; nothing is ever a 5xx."""
    assert answer.status < 500, answer
    if answer.status >= 400:
        assert answer.headers.get("Content-Type", "").startswith("application/json"), answer
        error = answer.json["error"]
        assert isinstance(error["code"], str)
        assert error["code"]
        assert isinstance(error["message"], str)
        assert error["message"]


def check_no_secret(answer: Answer) -> None:
    whole = answer.text + json.dumps(answer.headers)
    for secret in SECRETS:
        assert secret not in whole, f"a secret leaked in {answer.status} answer"


class Client:
    """Calls one daemon's API and keeps every answer for the secret scan."""

    def __init__(self, running: RunningDaemon, answers: list[Answer]) -> None:
        self.running = running
        self.answers = answers

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        token: str | None = API_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        # A stream, not bytes: aiohttp warns about large byte bodies and warnings are errors.
        payload = io.BytesIO(data) if data is not None else None
        async with self.running.session.request(
            method, f"{self.running.url}{path}", data=payload, headers=sent
        ) as response:
            answer = Answer(response.status, await response.text(), dict(response.headers))
        self.answers.append(answer)
        check_error_shape(answer)
        return answer

    async def register(self, task_id: str, **fields: Any) -> Answer:
        body = {"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou", **fields}
        return await self.call("POST", "/api/v1/tasks", body=body)

    async def task(self, task_id: str, app: int = APP) -> dict[str, Any]:
        answer = await self.call("GET", f"/api/v1/tasks/{app}/{task_id}", token=None)
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json
        return body

    async def listing(self, query: str = "") -> dict[str, Any]:
        answer = await self.call("GET", f"/api/v1/tasks{query}", token=None)
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json
        return body


def arrivals_of(simulator: Simulator, task_id: str) -> int:
    return sum(1 for a in simulator.arrivals if a.action == DESCRIBE and a.task_id == task_id)
