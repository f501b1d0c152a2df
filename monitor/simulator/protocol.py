"""The TRTC API wire format, as the simulator speaks it. Pure: no I/O, no clock reads.

Envelopes, common-parameter checks, TC3 verification and parameter validation, each
returning an ``ApiError`` (code + message) instead of raising, so the handler stays a straight
line and every rule can be tested directly.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.models import REGIONS
from monitor.trtc.signing import SERVICE, SIGNED_HEADERS, ParsedAuthorization, signature, utc_date
from monitor.trtc.sites import Site, site_info, site_of_host

VERSION = "2019-07-22"
CONTENT_TYPE = "application/json"  # exactly: the official SDK parses errors only then

CREATE = "CreateCloudRecording"
DESCRIBE = "DescribeCloudRecording"
DELETE = "DeleteCloudRecording"
MODIFY = "ModifyCloudRecording"
WEB_ACTIONS: frozenset[str] = frozenset({"StartWebRecord", "DescribeWebRecord", "StopWebRecord"})
ACTIONS: frozenset[str] = frozenset({CREATE, DESCRIBE, DELETE, MODIFY}) | WEB_ACTIONS

ENDED_CODES: tuple[str, ...] = (
    "FailedOperation.TaskNotExist",
    "ResourceNotFound",
    "FailedOperation.TaskFinished",
)
DEFAULT_ENDED_CODE = ENDED_CODES[0]

# How far X-TC-Timestamp may be from the server's clock.
SIGNATURE_TTL = 300

_MESSAGES: dict[str, str] = {
    "AuthFailure.InvalidAuthorization": "The Authorization header is missing or malformed.",
    "AuthFailure.SecretIdNotFound": (
        "The SecretId is not found, please ensure that your SecretId is correct."
    ),
    "AuthFailure.SignatureFailure": (
        "The provided credentials could not be validated. Please check your signature is correct."
    ),
    "AuthFailure.TokenFailure": "The provided token is invalid or has expired.",
    "FailedOperation.TaskNotExist": "The task does not exist or has ended.",
    "FailedOperation.TaskFinished": "The task has finished.",
    "ResourceNotFound": "The resource (task) does not exist.",
    "FailedOperation.RestrictedConcurrency": (
        "The number of concurrent recording tasks exceeds the limit of the application."
    ),
    "FailedOperation.QueryTaskInfoFailed": "Query task failed.",
    "FailedOperation.TaskExist": "The task already exists.",
    "UnsupportedOperation.TaskLimit": "The number of tasks has reached the limit.",
    "InvalidParameter.RecordId": "RecordId is invalid.",
    "InternalError": (
        "An internal error has occurred. Retry your request, but if the problem persists, "
        "contact us."
    ),
    "ServiceUnavailable": "The service is temporarily unavailable. Please try again later.",
}


def message_for(code: str) -> str:
    return _MESSAGES.get(code, f"The request failed with {code}.")


@dataclass(frozen=True, slots=True)
class ApiError:
    code: str
    message: str

    @classmethod
    def of(cls, code: str, message: str | None = None) -> ApiError:
        return cls(code, message if message is not None else message_for(code))


def request_id() -> str:
    return str(uuid.uuid4())


def envelope(payload: Mapping[str, Any], rid: str) -> bytes:
    return json.dumps({"Response": {**payload, "RequestId": rid}}).encode()


def error_envelope(error: ApiError, rid: str) -> bytes:
    return json.dumps(
        {"Response": {"Error": {"Code": error.code, "Message": error.message}, "RequestId": rid}}
    ).encode()


def throttle_message(count: int, limit: int) -> str:
    return (
        f"Your current request times equals to `{count}` in a second, "
        f"which exceeds the frequency limit `{limit}` for a second."
    )


def _missing(name: str) -> ApiError:
    return ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")


def check_common(action: str, version: str) -> ApiError | None:
    """Action and version, checked before anything else."""
    if not action:
        return _missing("Action")
    if action not in ACTIONS:
        return ApiError(
            "InvalidAction", f"The action `{action}` is not supported by this endpoint."
        )
    if not version:
        return _missing("Version")
    if version != VERSION:
        return ApiError("NoSuchVersion", f"The API version `{version}` does not exist.")
    return None


def check_region(
    region: str, host: str = "", action: str = DESCRIBE, default_site: Site | None = None
) -> ApiError | None:
    """The region against the site the signed ``host`` belongs to (the default site's for any
    other host, e.g. loopback; every region of the API when there is none), and against the
    narrower regions of the web-page recording actions."""
    if not region:
        return _missing("Region")
    site = site_of_host(host) or default_site
    if site is None:
        served: tuple[str, ...] = REGIONS
    else:
        info = site_info(site)
        served = info.web_regions if action in WEB_ACTIONS else info.regions
    if region not in served:
        return ApiError("UnsupportedRegion", f"The region `{region}` is not supported.")
    return None


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of a request that TC3 verification looks at."""

    auth: ParsedAuthorization | None
    timestamp: str
    host: str
    content_type: str
    body: bytes
    token: str


def verify(
    req: SignedRequest,
    credentials: Mapping[str, str],
    tokens: Mapping[str, str],
    now: float,
    service: str = SERVICE,
) -> ApiError | None:
    """TC3-HMAC-SHA256 verification with the service's error codes, in the service's order."""
    auth = req.auth
    if auth is None or auth.service != service or auth.signed_headers != SIGNED_HEADERS:
        return ApiError.of("AuthFailure.InvalidAuthorization")
    if not req.timestamp:
        return _missing("Timestamp")
    try:
        ts = int(req.timestamp)
    except ValueError:
        return ApiError(
            "InvalidParameterValue", f"The value `{req.timestamp}` of `Timestamp` is invalid."
        )
    secret_key = credentials.get(auth.secret_id)
    if secret_key is None:
        return ApiError.of("AuthFailure.SecretIdNotFound")
    if abs(ts - now) > SIGNATURE_TTL:
        return ApiError(
            "AuthFailure.SignatureExpire",
            f"Signature expired. Timestamp in request: {ts}, server time: {int(now)}, "
            f"allowed difference: {SIGNATURE_TTL}s.",
        )
    if auth.date != utc_date(ts):
        return ApiError.of("AuthFailure.SignatureFailure")
    expected = signature(secret_key, req.body, req.host, ts, service, req.content_type)
    if not hmac.compare_digest(expected, auth.signature):
        return ApiError.of("AuthFailure.SignatureFailure")
    required = tokens.get(auth.secret_id)
    if required is not None and not hmac.compare_digest(required, req.token):
        return ApiError.of("AuthFailure.TokenFailure")
    return None


def decode_params(body: bytes) -> dict[str, Any] | None:
    """The JSON object in the body, or None when there is none."""
    try:
        params = json.loads(body) if body else {}
    except ValueError:
        return None
    return params if isinstance(params, dict) else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sdk_app_id(params: Mapping[str, Any]) -> ApiError | None:
    if "SdkAppId" not in params or params["SdkAppId"] is None:
        return ApiError("MissingParameter.SdkAppId", "SdkAppId is required.")
    value = params["SdkAppId"]
    if not _is_int(value) or value <= 0:
        return ApiError("InvalidParameter.SdkAppId", "SdkAppId must be a positive integer.")
    return None


def check_task_ref(params: Mapping[str, Any]) -> ApiError | None:
    """SdkAppId + TaskId, as Describe, Delete and Modify need."""
    err = check_sdk_app_id(params)
    if err is not None:
        return err
    if "TaskId" not in params or params["TaskId"] is None:
        return ApiError("MissingParameter.TaskId", "TaskId is required.")
    task_id = params["TaskId"]
    if not isinstance(task_id, str) or not task_id:
        return ApiError("InvalidParameter.TaskId", "TaskId must be a non-empty string.")
    return None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    sdk_app_id: int
    room_id: str | int
    user_id: str
    max_idle_time: int
    resource_expired_hour: int
    vod: bool


DEFAULT_MAX_IDLE_TIME = 30
DEFAULT_RESOURCE_EXPIRED_HOUR = 72


def parse_create(params: Mapping[str, Any]) -> CreateRequest | ApiError:
    """Validate CreateCloudRecording parameters (the documented required ones and ranges)."""
    err = check_sdk_app_id(params)
    if err is not None:
        return err
    for name in ("RoomId", "UserId", "UserSig"):
        value = params.get(name)
        if value is None or value == "":
            return ApiError(f"MissingParameter.{name}", f"{name} is required.")
        if not isinstance(value, str):
            return ApiError(f"InvalidParameter.{name}", f"{name} must be a string.")
    record = params.get("RecordParams")
    if record is None:
        return ApiError("MissingParameter.RecordParams", "RecordParams is required.")
    if not isinstance(record, dict):
        return ApiError("InvalidParameter", "RecordParams must be an object.")
    if record.get("RecordMode") is None:
        return ApiError("MissingParameter.RecordMode", "RecordParams.RecordMode is required.")
    if record["RecordMode"] not in (1, 2):
        return ApiError("InvalidParameter.OutOfRange", "RecordParams.RecordMode must be 1 or 2.")
    max_idle = record.get("MaxIdleTime", DEFAULT_MAX_IDLE_TIME)
    if max_idle is None:
        max_idle = DEFAULT_MAX_IDLE_TIME
    if not _is_int(max_idle) or not 5 <= max_idle <= 86400:
        return ApiError(
            "InvalidParameter.OutOfRange", "RecordParams.MaxIdleTime must be within 5..86400."
        )
    storage = params.get("StorageParams")
    if storage is None:
        return ApiError("MissingParameter.StorageParams", "StorageParams is required.")
    if not isinstance(storage, dict):
        return ApiError("InvalidParameter", "StorageParams must be an object.")
    hours = params.get("ResourceExpiredHour", DEFAULT_RESOURCE_EXPIRED_HOUR)
    if hours is None:
        hours = DEFAULT_RESOURCE_EXPIRED_HOUR
    if not _is_int(hours) or not 6 <= hours <= 720:
        return ApiError("InvalidParameter.OutOfRange", "ResourceExpiredHour must be within 6..720.")
    room_id: str | int = params["RoomId"]
    # RoomIdType 0 (the default) is a numeric room: callbacks carry it as a number.
    if params.get("RoomIdType", 0) == 0 and isinstance(room_id, str) and room_id.isdigit():
        room_id = int(room_id)
    return CreateRequest(
        sdk_app_id=params["SdkAppId"],
        room_id=room_id,
        user_id=params["UserId"],
        max_idle_time=max_idle,
        resource_expired_hour=hours,
        vod=storage.get("CloudVod") is not None,
    )
