"""What the simulator's tests share: a raw signing client, a callback receiver, waits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from monitor.trtc.signing import authorization

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "scenario.example.yaml"
APP = 1400000001
DESCRIBE = "DescribeCloudRecording"
CREATE_PARAMS: dict[str, Any] = {
    "SdkAppId": APP,
    "RoomId": "8848",
    "UserId": "recorder_8848",
    "UserSig": "sig",
    "RecordParams": {"RecordMode": 2, "MaxIdleTime": 30},
    "StorageParams": {"CloudStorage": {"Vendor": 0, "Bucket": "b", "Region": "ap-guangzhou"}},
}


@dataclass
class Answer:
    status: int
    content_type: str
    text: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.text)  # type: ignore[no-any-return]

    @property
    def response(self) -> dict[str, Any]:
        return self.json["Response"]  # type: ignore[no-any-return]

    @property
    def code(self) -> str:
        return str(self.response.get("Error", {}).get("Code", ""))


@dataclass
class Client:
    """A raw TRTC client: signs with monitor.trtc.signing and sends with aiohttp."""

    session: aiohttp.ClientSession
    url: str
    clock: Callable[[], float] = time.time
    secret_id: str = DEFAULT_SECRET_ID
    secret_key: str = DEFAULT_SECRET_KEY
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1]

    async def call(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret_id: str | None = None,
        secret_key: str | None = None,
        timeout: float = 10.0,
    ) -> Answer:
        raw = body if body is not None else json.dumps(params or {}).encode()
        ts = int(self.clock()) if timestamp is None else timestamp
        h = {
            "Content-Type": "application/json",
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": "2019-07-22",
            "X-TC-Region": "ap-guangzhou",
            "X-TC-Timestamp": str(ts),
            "X-TC-Language": "en-US",
            "Authorization": authorization(
                secret_id or self.secret_id, secret_key or self.secret_key, raw, self.host, ts
            ),
            **self.defaults,
            **(headers or {}),
        }
        async with self.session.post(
            self.url + "/",
            data=raw,
            headers=h,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return Answer(resp.status, resp.headers.get("Content-Type", ""), await resp.text())

    async def describe(self, task_id: str, app: int = APP) -> Answer:
        return await self.call(DESCRIBE, {"SdkAppId": app, "TaskId": task_id})


@dataclass
class Receiver:
    """A loopback callback receiver that records what arrives."""

    url: str
    received: asyncio.Queue[tuple[dict[str, str], bytes]]
    status: list[int]


async def next_callback(receiver: Receiver, key: str) -> dict[str, Any]:
    headers, body = await asyncio.wait_for(receiver.received.get(), 10)
    expected = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    assert headers["Sign"] == expected
    assert headers["Content-Type"] == "application/json"
    event: dict[str, Any] = json.loads(body)
    assert headers["SdkAppId"] == str(APP)
    return event


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
