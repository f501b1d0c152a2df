"""Reading and checking one web configuration file (keys, values, users, headers)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from monitor.http.webconfig.settings import (
    ALLOWED_HEADERS,
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    TLS13_SUITES,
    TLS_VERSIONS,
    TlsSettings,
    WebConfig,
    WebConfigError,
)
from monitor.http.webconfig.tls import build_context, error_reason

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
_HTTP_KEYS = ("headers", "http2")
# Keys of the format this implementation refuses rather than ignores.
_NOT_SUPPORTED = {
    "rate_limit": "rate limiting is not supported; put a proxy in front if you need it",
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.client_ca": "inline client CAs are not supported; use client_ca_file",
    "tls_server_config.client_allowed_sans": "client_allowed_sans is not supported",
    "tls_server_config.curve_preferences": "curve_preferences is not supported",
}
_BCRYPT_RE = re.compile(rb"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")


def load_web_config(path: Path | None, *, basic_auth_allowed: bool = True) -> WebConfig:
    """Read, validate and build one file (blocking: call it in a thread). None = no file."""
    if path is None:
        return WebConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(
            f"{path}: cannot read the web configuration: {error_reason(exc)}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: not valid YAML: {_yaml_reason(exc)}") from None
    if data is None:
        data = {}
    where = str(path)
    data = _mapping(data, where, "")
    _known(data, _TOP_KEYS, where, "")
    base = path.parent
    tls = _tls(data.get("tls_server_config"), where, base)
    users = _users(data.get("basic_auth_users"), where)
    if users and not basic_auth_allowed:
        raise WebConfigError(
            f"{where}: basic_auth_users: not allowed on the callback listener "
            "(TRTC cannot send credentials; its callbacks are signed instead)"
        )
    headers = _http(data.get("http_server_config"), where)
    context = None if tls is None else build_context(tls, where)
    decoy = None
    if users:
        cost = max(int(_cost(h)) for h in users.values())
        decoy = bcrypt.hashpw(b"not a password of anyone", bcrypt.gensalt(cost))
    return WebConfig(path, tls, users, headers, context, decoy)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "syntax error"
    return f"{problem} (line {mark.line + 1})" if mark is not None else str(problem)


def _mapping(value: object, where: str, key: str) -> dict[Any, Any]:
    """``value``, which must be a mapping (``key`` names it in the error)."""
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: {key or 'the file'}: must be a mapping")
    return value


def _known(data: Mapping[Any, Any], known: tuple[str, ...], where: str, prefix: str) -> None:
    for key in data:
        name = f"{prefix}{key}"
        if name in _NOT_SUPPORTED:
            raise WebConfigError(f"{where}: {name}: {_NOT_SUPPORTED[name]}")
        if key not in known:
            raise WebConfigError(f"{where}: {name}: unknown key (known: {', '.join(known)})")


def _string(data: Mapping[str, Any], key: str, where: str, prefix: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{where}: {prefix}{key}: must be a non-empty string")
    return value


def _tls(value: object, where: str, base: Path) -> TlsSettings | None:
    if value is None:
        return None
    prefix = "tls_server_config."
    value = _mapping(value, where, "tls_server_config")
    _known(value, _TLS_KEYS, where, prefix)
    cert = _string(value, "cert_file", where, prefix)
    key = _string(value, "key_file", where, prefix)
    if cert is None or key is None:
        missing = "cert_file" if cert is None else "key_file"
        raise WebConfigError(f"{where}: {prefix}{missing}: missing (both files are needed)")
    auth = _string(value, "client_auth_type", where, prefix) or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        known = ", ".join(k for k in CLIENT_AUTH_TYPES if k != "RequireClientCert")
        raise WebConfigError(f'{where}: {prefix}client_auth_type: invalid "{auth}" ({known})')
    ca = _string(value, "client_ca_file", where, prefix)
    if ca is not None and auth == "NoClientCert":
        raise WebConfigError(
            f"{where}: {prefix}client_ca_file: set without a client_auth_type that asks for "
            "client certificates"
        )
    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = _string(value, name, where, prefix) or default
        if version not in TLS_VERSIONS:
            raise WebConfigError(
                f'{where}: {prefix}{name}: unknown TLS version "{version}" '
                f"({', '.join(TLS_VERSIONS)})"
            )
        versions.append(version)
    if TLS_VERSIONS[versions[0]] > TLS_VERSIONS[versions[1]]:
        raise WebConfigError(f"{where}: {prefix}min_version: above max_version")
    ciphers = _ciphers(value.get("cipher_suites"), where, prefix)
    prefer = value.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}: {prefix}prefer_server_cipher_suites: must be true or false")
    return TlsSettings(
        cert_file=_resolve(base, cert),
        key_file=_resolve(base, key),
        client_auth_type=auth,
        client_ca_file=None if ca is None else _resolve(base, ca),
        min_version=versions[0],
        max_version=versions[1],
        ciphers=ciphers,
        prefer_server_cipher_suites=prefer,
    )


def _resolve(base: Path, name: str) -> Path:
    # As exporter-toolkit: relative file names are relative to the web configuration file.
    path = Path(name)
    return path if path.is_absolute() else base / path


def _ciphers(value: object, where: str, prefix: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}: {prefix}cipher_suites: must be a list of names")
    out = []
    for name in value:
        if name in TLS13_SUITES:
            continue
        if name not in CIPHER_SUITES:
            raise WebConfigError(
                f'{where}: {prefix}cipher_suites: unknown cipher suite "{name}" '
                "(Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
        out.append(CIPHER_SUITES[name])
    return tuple(out)


def _cost(hashed: bytes) -> str:
    match = _BCRYPT_RE.fullmatch(hashed)
    assert match is not None
    return match.group(1).decode()


def _users(value: object, where: str) -> dict[str, bytes]:
    if value is None:
        return {}
    value = _mapping(value, where, "basic_auth_users")
    users: dict[str, bytes] = {}
    for name, hashed in value.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise WebConfigError(
                f"{where}: basic_auth_users: user names are non-empty strings without ':'"
            )
        raw = hashed.encode() if isinstance(hashed, str) else b""
        match = _BCRYPT_RE.fullmatch(raw)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            # The value itself is never shown: it may be a password pasted by mistake.
            raise WebConfigError(
                f"{where}: basic_auth_users.{name}: not a bcrypt hash "
                "(make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')"
            )
        users[name] = raw
    return users


def _http(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    value = _mapping(value, where, "http_server_config")
    _known(value, _HTTP_KEYS, where, "http_server_config.")
    if not isinstance(value.get("http2", True), bool):
        raise WebConfigError(f"{where}: http_server_config.http2: must be true or false")
    headers = value.get("headers")
    if headers is None:
        return {}
    headers = _mapping(headers, where, "http_server_config.headers")
    out: dict[str, str] = {}
    for name, text in headers.items():
        key = f"http_server_config.headers.{name}"
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(
                f"{where}: {key}: this header cannot be configured "
                f"(allowed: {', '.join(ALLOWED_HEADERS)})"
            )
        if text is None or text == "":
            continue  # blank = unset, as in exporter-toolkit
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise WebConfigError(f"{where}: {key}: must be a one-line string")
        allowed = ALLOWED_HEADERS[name]
        if allowed and text not in allowed:
            raise WebConfigError(
                f'{where}: {key}: invalid value "{text}" (expected one of: {", ".join(allowed)})'
            )
        out[name] = text
    return out
