"""Local stand-ins for the chat platforms' robot endpoints, on 127.0.0.1.

Each checks what the vendor documents: the key in the URL, the signature (computed here with
``hmac`` directly, independently of ``monitor.alerts.robots.signing``), the timestamp window,
the size limit and the rate, and answers with the platform's own error codes. The rate is
enforced over a sliding window on arrival times (the strictest reading of "N a minute"), and
the window is a parameter so tests can scale a minute down to a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DINGTALK_TOKEN = "dt0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
FEISHU_HOOK = "2fd2d9a1-5a4b-4e4b-9d6e-1c1e3f3e6d11"
SLACK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
ONE_HOUR = 3600.0


@dataclass
class Received:
    at: float  # monotonic arrival time
    path: str
    query: dict[str, str]
    body: Any
    size: int


@dataclass
class StandIn:
    """One robot of ``platform`` (wecom, dingtalk, feishu, slack)."""

    platform: str
    secret: str | None = None
    limit: int = 20
    window: float = 60.0
    # Feishu's second limit (per second), scaled like ``window``.
    burst_limit: int | None = None
    burst_window: float = 1.0
    # DingTalk keeps a robot that went past its limit throttled this long.
    penalty: float = 600.0
    url: str = ""
    accepted: list[Received] = field(default_factory=list)
    # (platform code or HTTP status, arrival time) of every refused request
    refused: list[tuple[str, float]] = field(default_factory=list)
    # Answer "too fast" to everything until this monotonic time.
    too_fast_until: float = 0.0
    retry_after: int = 1  # Slack's Retry-After, seconds
    _arrivals: deque[float] = field(default_factory=deque)
    _burst: deque[float] = field(default_factory=deque)

    # --- rate ---------------------------------------------------------------------------------

    def _over(self, arrivals: deque[float], limit: int, window: float, now: float) -> bool:
        while arrivals and arrivals[0] <= now - window:
            arrivals.popleft()
        arrivals.append(now)
        return len(arrivals) > limit

    def _too_fast(self, now: float) -> bool:
        if now < self.too_fast_until:
            return True
        over = self._over(self._arrivals, self.limit, self.window, now)
        if self.burst_limit is not None:
            over = self._over(self._burst, self.burst_limit, self.burst_window, now) or over
        if over and self.platform == "dingtalk":
            self.too_fast_until = now + self.penalty
        return over

    def refused_codes(self) -> list[str]:
        return [code for code, _ in self.refused]

    # --- handlers -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        raw = await request.read()
        query = dict(request.query)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        handler = {
            "wecom": self._wecom,
            "dingtalk": self._dingtalk,
            "feishu": self._feishu,
            "slack": self._slack,
        }[self.platform]
        answer, code = handler(request.path, query, body, len(raw), now)
        if code:
            self.refused.append((code, now))
        else:
            self.accepted.append(Received(now, request.path, query, body, len(raw)))
        return answer

    def _errcode(self, code: int, message: str) -> tuple[web.Response, str]:
        refused = str(code) if code else ""
        return web.json_response({"errcode": code, "errmsg": message}), refused

    def _wecom(
        self, path: str, query: dict[str, str], body: Any, size: int, now: float
    ) -> tuple[web.Response, str]:
        if path != "/cgi-bin/webhook/send" or query.get("key") != WECOM_KEY:
            return self._errcode(93000, "invalid webhook url")
        if self._too_fast(now):
            return self._errcode(45009, "api freq out of limit")
        if not isinstance(body, dict) or body.get("msgtype") != "markdown":
            return self._errcode(40008, "invalid message type")
        content = body.get("markdown", {}).get("content")
        if not isinstance(content, str) or not content:
            return self._errcode(44004, "empty content")
        if len(content.encode()) > 4096:
            return self._errcode(40058, "markdown.content exceed max length 4096")
        return self._errcode(0, "ok")

    def _dingtalk(
        self, path: str, query: dict[str, str], body: Any, size: int, now: float
    ) -> tuple[web.Response, str]:
        if path != "/robot/send" or query.get("access_token") != DINGTALK_TOKEN:
            return self._errcode(300001, "token is not exist")
        if self.secret is not None:
            timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
            if not timestamp.isdigit() or abs(int(timestamp) / 1000 - time.time()) > ONE_HOUR:
                return self._errcode(310000, "invalid timestamp")
            string_to_sign = f"{timestamp}\n{self.secret}".encode()
            expected = base64.b64encode(
                hmac.new(self.secret.encode(), string_to_sign, hashlib.sha256).digest()
            ).decode()
            if not hmac.compare_digest(expected.encode(), sign.encode()):
                return self._errcode(310000, "sign not match")
        if self._too_fast(now):
            return self._errcode(130101, "send too fast, exceed 20 times per minute")
        if size > 20_000:
            return self._errcode(460101, "message too long")
        if not isinstance(body, dict) or body.get("msgtype") != "markdown":
            return self._errcode(40035, "invalid msgtype")
        markdown = body.get("markdown", {})
        if not markdown.get("title") or not markdown.get("text"):
            return self._errcode(40035, "missing title or text")
        return self._errcode(0, "ok")

    def _feishu(
        self, path: str, query: dict[str, str], body: Any, size: int, now: float
    ) -> tuple[web.Response, str]:
        def answer(code: int, msg: str) -> tuple[web.Response, str]:
            refused = str(code) if code else ""
            return web.json_response({"code": code, "data": {}, "msg": msg}), refused

        if path != f"/open-apis/bot/v2/hook/{FEISHU_HOOK}":
            return answer(19001, "param invalid: incoming webhook access token invalid")
        if not isinstance(body, dict):
            return answer(9499, "Bad Request")
        if self.secret is not None:
            timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
            if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > ONE_HOUR:
                return answer(19021, "sign match fail or timestamp is not within one hour")
            key = f"{timestamp}\n{self.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if not hmac.compare_digest(expected.encode(), sign.encode()):
                return answer(19021, "sign match fail or timestamp is not within one hour")
        if self._too_fast(now):
            return answer(9499, "too many request")
        if size > 20 * 1024:
            return answer(19036, "request body too large")
        if body.get("msg_type") != "interactive" or not isinstance(body.get("card"), dict):
            return answer(19002, "params error, msg_type need")
        return answer(0, "success")

    def _slack(
        self, path: str, query: dict[str, str], body: Any, size: int, now: float
    ) -> tuple[web.Response, str]:
        if path != SLACK_PATH:
            return web.Response(status=404, text="no_service"), "404"
        if self._too_fast(now):
            response = web.Response(
                status=429, text="rate_limited", headers={"Retry-After": str(self.retry_after)}
            )
            return response, "429"
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return web.Response(status=400, text="invalid_payload"), "400"
        blocks = body.get("blocks", [])
        if len(blocks) > 50 or any(
            len(b.get("text", {}).get("text", "")) > 3000 for b in blocks if b["type"] == "section"
        ):
            return web.Response(status=400, text="invalid_blocks"), "400"
        return web.Response(text="ok"), ""

    # --- where to send ------------------------------------------------------------------------

    def robot_url(self) -> str:
        """The URL a user would configure (it carries the robot's key)."""
        return {
            "wecom": f"{self.url}/cgi-bin/webhook/send?key={WECOM_KEY}",
            "dingtalk": f"{self.url}/robot/send?access_token={DINGTALK_TOKEN}",
            "feishu": f"{self.url}/open-apis/bot/v2/hook/{FEISHU_HOOK}",
            "slack": f"{self.url}{SLACK_PATH}",
        }[self.platform]


@asynccontextmanager
async def serving(standin: StandIn) -> AsyncIterator[StandIn]:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", standin.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    standin.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield standin
    finally:
        await runner.cleanup()
