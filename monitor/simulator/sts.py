"""STS and temporary credentials in the simulator.

``CredentialIssuer`` hands out temporary credentials the way STS and the CVM metadata service
do, with a lifetime a test may shorten to seconds, and remembers them so the TRTC actions
accept them (with their ``X-TC-Token``) until ``ExpiredTime`` and answer
``AuthFailure.TokenFailure`` after. ``answer_sts`` is the STS API (Version 2018-08-13) over the
same wire format as TRTC: ``AssumeRole`` must be TC3-signed with service ``sts``;
``AssumeRoleWithWebIdentity`` is sent unsigned by the official SDK and is accepted so.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.simulator.protocol import ApiError, SignedRequest, verify

STS_VERSION = "2018-08-13"
STS_SERVICE = "sts"
ASSUME_ROLE = "AssumeRole"
ASSUME_ROLE_WITH_WEB_IDENTITY = "AssumeRoleWithWebIdentity"
STS_ACTIONS: frozenset[str] = frozenset({ASSUME_ROLE, ASSUME_ROLE_WITH_WEB_IDENTITY})
# The pseudo action faults name to hit the metadata service (it has no X-TC-Action).
METADATA = "MetadataCredentials"
METADATA_KIND = "metadata"

DEFAULT_DURATION = 7200
MAX_DURATION = 43200
ROLE_ARN_RE = re.compile(r"qcs::cam::uin/[0-9]+:role(?:Name)?/[A-Za-z0-9_+=,.@/-]{1,128}")
SESSION_NAME_RE = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
# Expired credentials are still recognised this long (answered TokenFailure, not
# SecretIdNotFound), then forgotten so a long run does not grow without bound.
REMEMBER_EXPIRED = 3600.0
# The metadata service hands out the same credentials until this share of their lifetime is
# left, as the real one rotates them some time before they expire.
METADATA_ROTATE_AT = 0.6
_ALPHABET = string.ascii_letters + string.digits


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class IssuedCredential:
    secret_id: str
    secret_key: str = field(repr=False)
    token: str = field(repr=False)
    issued_at: float  # wall clock
    expires_at: int  # ExpiredTime, unix seconds
    kind: str  # AssumeRole | AssumeRoleWithWebIdentity | metadata
    role: str  # RoleArn, or the metadata role name
    session_name: str = ""
    base_secret_id: str = ""  # who asked (AssumeRole)
    requested_mono: float = 0.0  # when the request arrived
    answered_mono: float = 0.0  # when it was answered (after any injected latency)

    def public(self) -> dict[str, Any]:
        """What the control surface shows: never the key or the token."""
        return {
            "secret_id": self.secret_id,
            "kind": self.kind,
            "role": self.role,
            "session_name": self.session_name,
            "base_secret_id": self.base_secret_id,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }


class CredentialIssuer:
    """Temporary credentials issued by this simulator, and the settings for issuing them.

    ``lifetime`` (seconds) caps every lifetime (None: as asked, 7200 s by default);
    ``roles`` restricts the RoleArns STS accepts (None: any well-formed one);
    ``web_identity_tokens`` restricts the accepted web identity tokens (None: any);
    ``metadata_role`` is the CAM role bound to the simulated CVM (None: no role, 404).
    """

    def __init__(
        self,
        *,
        lifetime: float | None = None,
        metadata_role: str | None = None,
        roles: set[str] | None = None,
        web_identity_tokens: set[str] | None = None,
    ) -> None:
        self.lifetime = lifetime
        self.metadata_role = metadata_role
        self.roles = roles
        self.web_identity_tokens = web_identity_tokens
        self.keys: dict[str, str] = {}  # SecretId -> SecretKey, for verification
        self.tokens: dict[str, str] = {}  # SecretId -> token
        self.issued: dict[str, IssuedCredential] = {}
        self.history: list[IssuedCredential] = []
        self.web_identity_seen: list[str] = []
        self._metadata_current: IssuedCredential | None = None

    def _lifetime(self, asked: float) -> float:
        return asked if self.lifetime is None else min(asked, self.lifetime)

    def issue(
        self,
        kind: str,
        role: str,
        duration: float,
        now: float,
        *,
        session_name: str = "",
        base_secret_id: str = "",
        requested_mono: float = 0.0,
    ) -> IssuedCredential:
        self.prune(now)
        cred = IssuedCredential(
            secret_id="AKIDTMP" + _random(25),
            secret_key=_random(32),
            token=_random(48),
            issued_at=now,
            expires_at=int(now + self._lifetime(duration)),
            kind=kind,
            role=role,
            session_name=session_name,
            base_secret_id=base_secret_id,
            requested_mono=requested_mono,
        )
        self.keys[cred.secret_id] = cred.secret_key
        self.tokens[cred.secret_id] = cred.token
        self.issued[cred.secret_id] = cred
        self.history.append(cred)
        return cred

    def expired(self, secret_id: str, now: float) -> bool:
        cred = self.issued.get(secret_id)
        return cred is not None and now >= cred.expires_at

    def prune(self, now: float) -> None:
        for secret_id, cred in list(self.issued.items()):
            if now - cred.expires_at > REMEMBER_EXPIRED:
                del self.issued[secret_id]
                self.keys.pop(secret_id, None)
                self.tokens.pop(secret_id, None)
        if len(self.history) > 10_000:
            del self.history[: len(self.history) - 10_000]

    def metadata_credentials(self, role: str, now: float, mono: float) -> IssuedCredential:
        """The role's current credentials: the same ones until they are due for rotation."""
        current = self._metadata_current
        if current is not None and current.role == role:
            lifetime = current.expires_at - current.issued_at
            if current.expires_at - now > lifetime * (1 - METADATA_ROTATE_AT):
                return current
        current = self.issue(METADATA_KIND, role, DEFAULT_DURATION, now, requested_mono=mono)
        current.answered_mono = mono
        self._metadata_current = current
        return current

    def settings(self) -> dict[str, Any]:
        return {
            "lifetime": self.lifetime,
            "metadata_role": self.metadata_role,
            "roles": None if self.roles is None else sorted(self.roles),
            "issued": len(self.history),
        }


def _credentials_payload(cred: IssuedCredential) -> dict[str, Any]:
    return {
        "Credentials": {
            "Token": cred.token,
            "TmpSecretId": cred.secret_id,
            "TmpSecretKey": cred.secret_key,
        },
        "ExpiredTime": cred.expires_at,
        "Expiration": iso(cred.expires_at),
    }


def _duration(params: Mapping[str, Any]) -> int | ApiError:
    value = params.get("DurationSeconds", DEFAULT_DURATION)
    if value is None:
        return DEFAULT_DURATION
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DURATION:
        return ApiError(
            "InvalidParameterValue",
            f"DurationSeconds must be an integer from 1 to {MAX_DURATION}.",
        )
    return value


def _role_params(params: Mapping[str, Any], issuer: CredentialIssuer) -> ApiError | None:
    for name in ("RoleArn", "RoleSessionName"):
        value = params.get(name)
        if value is None or value == "":
            return ApiError("MissingParameter", f"The request is missing `{name}`.")
        if not isinstance(value, str):
            return ApiError("InvalidParameter", f"{name} must be a string.")
    if not ROLE_ARN_RE.fullmatch(params["RoleArn"]):
        return ApiError("InvalidParameter.ParamError", "RoleArn is not a valid role ARN.")
    if not SESSION_NAME_RE.fullmatch(params["RoleSessionName"]):
        return ApiError("InvalidParameter.ParamError", "RoleSessionName is not valid.")
    if issuer.roles is not None and params["RoleArn"] not in issuer.roles:
        return ApiError("ResourceNotFound.RoleNotExist", "The role does not exist.")
    return None


def answer_sts(
    action: str,
    version: str,
    signed: SignedRequest,
    params: Mapping[str, Any] | None,
    issuer: CredentialIssuer,
    credentials: Mapping[str, str],
    tokens: Mapping[str, str],
    now: float,
    requested_mono: float,
) -> tuple[dict[str, Any] | ApiError, IssuedCredential | None]:
    """One STS call: the answer's payload (or error) and the credentials it issued."""
    if version != STS_VERSION:
        return ApiError("NoSuchVersion", f"The API version `{version}` does not exist."), None
    if params is None:
        return ApiError("InvalidParameter", "The request body is not a JSON object."), None
    base_secret_id = ""
    if action == ASSUME_ROLE:
        err = verify(signed, credentials, tokens, now, STS_SERVICE)
        if err is not None:
            return err, None
        assert signed.auth is not None
        base_secret_id = signed.auth.secret_id
        if issuer.expired(base_secret_id, now):
            return ApiError.of("AuthFailure.TokenFailure"), None
    else:
        for name in ("ProviderId", "WebIdentityToken"):
            value = params.get(name)
            if not isinstance(value, str) or not value:
                return ApiError("MissingParameter", f"The request is missing `{name}`."), None
        token = params["WebIdentityToken"]
        issuer.web_identity_seen.append(token)
        if issuer.web_identity_tokens is not None and token not in issuer.web_identity_tokens:
            return (
                ApiError(
                    "InvalidParameter.WebIdentityTokenError",
                    "The web identity token is invalid or expired.",
                ),
                None,
            )
    err = _role_params(params, issuer)
    if err is not None:
        return err, None
    duration = _duration(params)
    if isinstance(duration, ApiError):
        return duration, None
    cred = issuer.issue(
        action,
        params["RoleArn"],
        duration,
        now,
        session_name=params["RoleSessionName"],
        base_secret_id=base_secret_id,
        requested_mono=requested_mono,
    )
    return _credentials_payload(cred), cred


def metadata_document(cred: IssuedCredential) -> dict[str, Any]:
    """The CVM metadata service's credentials document."""
    return {
        "TmpSecretId": cred.secret_id,
        "TmpSecretKey": cred.secret_key,
        "Token": cred.token,
        "ExpiredTime": cred.expires_at,
        "Expiration": iso(cred.expires_at),
        "Code": "Success",
    }
