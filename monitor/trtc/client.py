"""Async client for the TRTC recording API over one long-lived aiohttp session.

Every call is one attempt: no hidden retries, because every attempt has to pass the rate
limiter, which lives outside. Every answer, including transport failures, is classified into an
``Outcome`` and keeps the ``RequestId`` when there is one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from monitor.models import REGIONS, Outcome, Status
from monitor.trtc.errors import DEFAULT_ENDED_CODES, classify_code
from monitor.trtc.signing import CONTENT_TYPE, authorization

API_VERSION = "2019-07-22"
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
HOST_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_SAMPLE_REGION = REGIONS[0]
DEFAULT_HOST = "trtc.tencentcloudapi.com"

# Codes for failures that never reached a Tencent answer; they share the `code` label space.
CODE_TIMEOUT = "Transport.Timeout"
CODE_CONNECTION = "Transport.ConnectionError"
CODE_MALFORMED = "Transport.MalformedResponse"


def http_status_code(status: int) -> str:
    return f"Transport.HTTP{status}"


class CredentialsLike(Protocol):
    @property
    def secret_id(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an account's requests go: ``scheme://host`` where host may hold ``{region}``."""

    scheme: str
    host_template: str

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Accepts a bare host (https), ``https://host``, ``http://host:port``, and ``{region}``
        anywhere in the host. Raises ValueError naming what is wrong otherwise.

        A port that is the scheme's default is dropped, so the Host header and the signature
        carry the host exactly as the SDK would send it.
        """
        template = text.strip()

        def invalid(why: str) -> ValueError:
            return ValueError(f'invalid endpoint "{text}" ({why})')

        if re.search(r"[{}]", template.replace("{region}", "")):
            raise invalid("only {region} may appear in braces")
        # Validate with a real region in place; keep the placeholder in what is stored.
        sample = template.replace("{region}", _SAMPLE_REGION)
        if "://" not in sample:
            sample = "https://" + sample
        parts = urlsplit(sample)
        if parts.scheme not in ("http", "https"):
            raise invalid("scheme must be http or https")
        if parts.username is not None or parts.password is not None:
            raise invalid("credentials are not allowed here")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise invalid("no path or query: just [scheme://]host")
        hostname = parts.hostname or ""
        bracketed = parts.netloc.rsplit("@", 1)[-1].startswith("[")
        if not bracketed and not HOST_RE.fullmatch(hostname):
            raise invalid("not a valid host name")
        try:
            port = parts.port
        except ValueError:
            raise invalid("invalid port") from None
        host = f"[{hostname}]" if bracketed else hostname
        if port is not None and port != (443 if parts.scheme == "https" else 80):
            host = f"{host}:{port}"
        return cls(scheme=parts.scheme, host_template=host.replace(_SAMPLE_REGION, "{region}"))

    @property
    def per_region(self) -> bool:
        return "{region}" in self.host_template

    def host(self, region: str) -> str:
        """The access host for a region: also the Host header and part of the signature."""
        return self.host_template.replace("{region}", region)

    def url(self, region: str) -> str:
        return f"{self.scheme}://{self.host(region)}/"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_template}"


@dataclass(frozen=True, slots=True)
class CallResult:
    """One classified API attempt."""

    outcome: Outcome
    code: str  # "" for ok; the Tencent error code; or a Transport.* code
    message: str = ""
    request_id: str | None = None
    response: dict[str, Any] | None = field(default=None, repr=False)
    http_status: int | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def status(self) -> Status | None:
        """The recording status of a DescribeCloudRecording answer, when it had one."""
        if self.response is None:
            return None
        raw = self.response.get("Status")
        try:
            return Status(raw) if isinstance(raw, str) else None
        except ValueError:
            return None

    @property
    def recorder_key(self) -> str | None:
        """The answer's ``RecorderKey`` (relay recordings), when it carried one."""
        raw = self.response.get("RecorderKey") if self.response else None
        return raw if isinstance(raw, str) and raw else None

    @property
    def storage_files(self) -> list[dict[str, Any]]:
        files = self.response.get("StorageFileList") if self.response else None
        return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []


def classify_body(
    raw: bytes, ended_codes: Collection[str], http_status: int, duration: float
) -> CallResult:
    """Classify a complete HTTP answer. Pure: the tests feed it every shape."""
    if http_status != 200:
        return CallResult(
            Outcome.TRANSIENT,
            http_status_code(http_status),
            f"HTTP status {http_status}",
            http_status=http_status,
            duration=duration,
        )
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return CallResult(
            Outcome.TRANSIENT,
            CODE_MALFORMED,
            "body is not JSON",
            http_status=200,
            duration=duration,
        )
    response = envelope.get("Response") if isinstance(envelope, dict) else None
    if not isinstance(response, dict):
        return CallResult(
            Outcome.TRANSIENT,
            CODE_MALFORMED,
            "body has no Response object",
            http_status=200,
            duration=duration,
        )
    request_id = response.get("RequestId")
    request_id = request_id if isinstance(request_id, str) else None
    error = response.get("Error")
    if error is not None:
        code = error.get("Code") if isinstance(error, dict) else None
        if not isinstance(code, str) or not code:
            return CallResult(
                Outcome.TRANSIENT,
                CODE_MALFORMED,
                "Response.Error has no Code",
                request_id=request_id,
                http_status=200,
                duration=duration,
            )
        message = error.get("Message")
        return CallResult(
            classify_code(code, ended_codes),
            code,
            message if isinstance(message, str) else "",
            request_id=request_id,
            response=response,
            http_status=200,
            duration=duration,
        )
    return CallResult(
        Outcome.OK, "", request_id=request_id, response=response, http_status=200, duration=duration
    )


def describe_result(result: CallResult) -> CallResult:
    """A DescribeCloudRecording success must carry a known Status; otherwise it is malformed."""
    if result.ok and (result.status is None or result.status not in _DESCRIBE_STATUSES):
        return CallResult(
            Outcome.TRANSIENT,
            CODE_MALFORMED,
            "DescribeCloudRecording answer has no valid Status",
            request_id=result.request_id,
            response=result.response,
            http_status=result.http_status,
            duration=result.duration,
        )
    return result


_DESCRIBE_STATUSES = frozenset({Status.IDLE, Status.IN_PROGRESS, Status.EXITED})


class TrtcClient:
    """Signs, sends and classifies TRTC API calls. One instance per daemon."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 6.0,
        ended_codes: Collection[str] = DEFAULT_ENDED_CODES,
        clock: Callable[[], float] = time.time,
        on_send: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        # Told right before each request is written, e.g. so the rate limiter counts the real
        # send time rather than the moment it granted the request.
        self._on_send = on_send
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ended_codes = frozenset(ended_codes)
        self._clock = clock

    def configure(self, *, timeout: float, ended_codes: Collection[str]) -> None:
        """Apply reloaded polling settings."""
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ended_codes = frozenset(ended_codes)

    async def call(
        self,
        *,
        endpoint: Endpoint,
        credentials: CredentialsLike,
        action: str,
        region: str,
        params: Mapping[str, Any],
        language: str = "en-US",
    ) -> CallResult:
        body = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        host = endpoint.host(region)
        timestamp = int(self._clock())
        headers = {
            "Authorization": authorization(
                credentials.secret_id, credentials.secret_key, body, host, timestamp
            ),
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Region": region,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Language": language,
        }
        if credentials.token:
            headers["X-TC-Token"] = credentials.token
        started = time.monotonic()
        if self._on_send is not None:
            self._on_send()
        try:
            async with self._session.post(
                endpoint.url(region), data=body, headers=headers, timeout=self._timeout
            ) as answer:
                raw = await answer.read()
                status = answer.status
        except TimeoutError:
            return CallResult(
                Outcome.TRANSIENT,
                CODE_TIMEOUT,
                "request timed out",
                duration=time.monotonic() - started,
            )
        except (aiohttp.ClientError, OSError) as exc:
            # The exception text names the URL at most; never the headers.
            return CallResult(
                Outcome.TRANSIENT,
                CODE_CONNECTION,
                type(exc).__name__,
                duration=time.monotonic() - started,
            )
        return classify_body(raw, self._ended_codes, status, time.monotonic() - started)

    async def describe_cloud_recording(
        self,
        *,
        endpoint: Endpoint,
        credentials: CredentialsLike,
        region: str,
        sdk_app_id: int,
        task_id: str,
        recorder_key: str | None = None,
        language: str = "en-US",
    ) -> CallResult:
        """One DescribeCloudRecording; ``recorder_key`` names one recording of a relay
        recording task and is sent only when given."""
        params: dict[str, Any] = {"SdkAppId": sdk_app_id, "TaskId": task_id}
        if recorder_key:
            params["RecorderKey"] = recorder_key
        result = await self.call(
            endpoint=endpoint,
            credentials=credentials,
            action="DescribeCloudRecording",
            region=region,
            params=params,
            language=language,
        )
        return describe_result(result)


def new_session(max_connections: int = 100) -> aiohttp.ClientSession:
    """The daemon's one HTTP session: keep-alive pool, no cookies, no env proxies."""
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        raise_for_status=False,
    )


__all__ = [
    "API_VERSION",
    "CODE_CONNECTION",
    "CODE_MALFORMED",
    "CODE_TIMEOUT",
    "CallResult",
    "CredentialsLike",
    "Endpoint",
    "TrtcClient",
    "classify_body",
    "describe_result",
    "new_session",
]
