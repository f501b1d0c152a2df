"""The web configuration file of Prometheus exporters (exporter-toolkit's format).

The same file node_exporter or blackbox_exporter take with ``--web.config.file``:

* ``tls_server_config``: the certificate and key to serve HTTPS with, the client certificate
  policy (``client_auth_type``, ``client_ca_file``), TLS versions and TLS 1.2 cipher suites
  (Go's names, mapped here to OpenSSL's);
* ``basic_auth_users``: user name to bcrypt hash; every request must carry one of them;
* ``http_server_config.headers``: extra headers on every answer, only the ones exporter-toolkit
  allows (and with its allowed values).

A key this module does not know, or one of the format it does not implement (inline
certificates, ``client_allowed_sans``, ``curve_preferences``, ``rate_limit``), is refused with
its name: a setting that would be silently ignored is worse than a refused file.

:class:`LiveWebConfig` keeps the file in force for one listener. It is read again on reload
and whenever the file or the certificate files it names change (their identity and mtime are
looked at every second, in a thread), and swapped only when the whole new file is valid: a
rotated certificate, a new user or new headers take effect without a restart, and a broken
file leaves the running one in place. A new certificate reaches new connections through the
listening context's SNI callback, which hands each handshake the newest context.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import re
import ssl
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import structlog
import yaml

log = structlog.get_logger("monitor.http.webconfig")

WATCH_SECONDS = 1.0
# Successful checks remembered (a scrape every few seconds must not cost a bcrypt each).
AUTH_CACHE_SIZE = 256

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    # Python's TLS stack verifies any certificate it asks for: the two Go policies that take
    # an unverified certificate verify it here too (stricter, never looser).
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,  # exporter-toolkit's older name of the above
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's names of the suites exporter-toolkit accepts, and OpenSSL's names of the same suites.
# TLS 1.3 suites are not configurable (in Go as here): they are accepted and have no effect.
TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# Without cipher_suites: forward-secret AEAD and CBC suites, nothing weak.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:!eNULL:!MD5:!3DES"

# The headers exporter-toolkit lets a file set; a tuple lists the only values allowed.
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

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


class WebConfigError(Exception):
    """The file cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    ciphers: tuple[str, ...] = ()  # OpenSSL names; empty = DEFAULT_CIPHERS
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[Path, ...]:
        listed = (self.cert_file, self.key_file, self.client_ca_file)
        return tuple(p for p in listed if p is not None)


@dataclass(frozen=True, slots=True)
class WebConfig:
    """One valid file, with its TLS context built (None without TLS)."""

    path: Path | None = None
    tls: TlsSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    context: ssl.SSLContext | None = None
    # What unknown user names are checked against, at the highest cost in use: an unknown
    # name takes as long to refuse as a wrong password.
    decoy: bytes | None = None

    def watched(self) -> tuple[Path, ...]:
        files = () if self.tls is None else self.tls.files()
        return files if self.path is None else (self.path, *files)


# ---------------------------------------------------------------------------------- reading


def load_web_config(path: Path | None, *, basic_auth_allowed: bool = True) -> WebConfig:
    """Read, validate and build one file (blocking: call it in a thread). None = no file."""
    if path is None:
        return WebConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: cannot read the web configuration: {_reason(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: not valid YAML: {_yaml_reason(exc)}") from None
    if data is None:
        data = {}
    where = str(path)
    _mapping(data, where, "")
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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "syntax error"
    return f"{problem} (line {mark.line + 1})" if mark is not None else str(problem)


def _mapping(value: object, where: str, key: str) -> None:
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: {key or 'the file'}: must be a mapping")


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
    _mapping(value, where, "tls_server_config")
    assert isinstance(value, dict)
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
    _mapping(value, where, "basic_auth_users")
    assert isinstance(value, dict)
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
    _mapping(value, where, "http_server_config")
    assert isinstance(value, dict)
    _known(value, _HTTP_KEYS, where, "http_server_config.")
    if not isinstance(value.get("http2", True), bool):
        raise WebConfigError(f"{where}: http_server_config.http2: must be true or false")
    headers = value.get("headers")
    if headers is None:
        return {}
    _mapping(headers, where, "http_server_config.headers")
    assert isinstance(headers, dict)
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


# ---------------------------------------------------------------------------------- TLS


def tune(context: ssl.SSLContext, tls: TlsSettings) -> None:
    """The per-connection settings (copied into each connection when it is made)."""
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    context.set_ciphers(":".join(tls.ciphers) if tls.ciphers else DEFAULT_CIPHERS)
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


def _no_password() -> bytes:
    raise WebConfigError("the key file is encrypted; give it without a passphrase")


def build_context(tls: TlsSettings, where: str) -> ssl.SSLContext:
    """A server context from the settings; the files are read now (blocking)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    prefix = f"{where}: tls_server_config"
    try:
        tune(context, tls)
    except ssl.SSLError as exc:
        raise WebConfigError(f"{prefix}: cipher_suites: none usable ({exc.reason})") from None
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except WebConfigError as exc:
        raise WebConfigError(f"{prefix}.key_file: {exc}") from None
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else _reason(exc)
        raise WebConfigError(
            f"{prefix}: cannot load cert_file {tls.cert_file} with key_file {tls.key_file}: "
            f"{reason}"
        ) from None
    if tls.client_auth_type != "NoClientCert":
        try:
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=tls.client_ca_file)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else _reason(exc)
            raise WebConfigError(
                f"{prefix}.client_ca_file: cannot load {tls.client_ca_file}: {reason}"
            ) from None
    return context


# ---------------------------------------------------------------------------------- basic auth


def parse_basic(header: str) -> tuple[str, bytes] | None:
    """(user, password) from an ``Authorization: Basic`` value; None when malformed."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class BasicAuth:
    """Checks credentials against a file's users; successful checks are cached.

    The cache key is a SHA-256 of user, stored hash and password, so a changed hash or
    password misses; it holds no password. Failures are never cached (each costs a bcrypt,
    which also slows guessing). Checks run one at a time in a thread, off the loop.
    """

    def __init__(self, size: int = AUTH_CACHE_SIZE) -> None:
        self._size = size
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = asyncio.Lock()
        self.bcrypt_checks = 0

    async def check(self, config: WebConfig, header: str) -> bool:
        parsed = parse_basic(header)
        if parsed is None:
            return False
        user, password = parsed
        hashed = config.users.get(user)
        target = hashed if hashed is not None else config.decoy
        if target is None:
            return False
        digest = hashlib.sha256()
        for part in (user.encode(), target, password):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        key = digest.digest()
        if hashed is not None and key in self._ok:
            self._ok.move_to_end(key)
            return True
        async with self._lock:
            self.bcrypt_checks += 1
            ok = await asyncio.to_thread(_checkpw, password, target)
        if not ok or hashed is None:
            return False
        self._ok[key] = None
        while len(self._ok) > self._size:
            self._ok.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ok)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)  # compares in constant time
    except ValueError:
        return False


# ---------------------------------------------------------------------------------- live file


def _identity(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int, int] | None, ...]:
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class LiveWebConfig:
    """The file in force for one listener, re-read on reload and when its files change."""

    def __init__(
        self,
        name: str,
        path: Path | None,
        *,
        basic_auth_allowed: bool = True,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.basic_auth_allowed = basic_auth_allowed
        self.current = WebConfig()
        self.auth = BasicAuth()
        self._on_failure = on_failure
        self._base: ssl.SSLContext | None = None
        self._stamp: tuple[tuple[int, int, int, int] | None, ...] = ()
        self._failed_stamp: object = None
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._watch_period: float | None = None  # set once serving: watch files named later

    @property
    def tls(self) -> bool:
        return self._base is not None

    async def read(self, path: Path | None) -> tuple[WebConfig, tuple[Any, ...]]:
        """Load ``path`` in a thread; WebConfigError when it cannot be used."""

        def work() -> tuple[WebConfig, tuple[Any, ...]]:
            config = load_web_config(path, basic_auth_allowed=self.basic_auth_allowed)
            return config, _identity(config.watched())

        return await asyncio.to_thread(work)

    async def load(self) -> None:
        """The first read, at start: fixes whether this listener speaks TLS."""
        config, stamp = await self.read(self.path)
        self.current, self._stamp = config, stamp
        if config.context is not None and config.tls is not None:
            self._base = build_context(config.tls, str(config.path))
            self._base.sni_callback = self._pick_context

    def ssl_context(self) -> ssl.SSLContext | None:
        """The listening socket's context (None: plain HTTP). Fixed for the process's life;
        each handshake is handed the newest context by the SNI callback."""
        return self._base

    def _pick_context(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        newest = self.current.context
        if newest is not None and connection.context is not newest:
            connection.context = newest

    async def prepare(self, path: Path | None) -> Callable[[], None]:
        """Read and check ``path`` for a reload; the returned call puts it in force."""
        config, stamp = await self.read(path)
        self._check_switch(config)
        return lambda: self._apply(path, config, stamp)

    def _check_switch(self, config: WebConfig) -> None:
        if (config.context is not None) != self.tls:
            state = "on" if self.tls else "off"
            raise WebConfigError(
                f"{config.path or 'no web configuration file'}: TLS was {state} when the "
                f"{self.name} listener started; turning it on or off takes a restart"
            )

    def _apply(self, path: Path | None, config: WebConfig, stamp: tuple[Any, ...]) -> None:
        # Settings copied into each new connection go on the listening context; the
        # certificate and the client CAs come with the context the SNI callback hands over.
        if self._base is not None and config.tls is not None:
            tune(self._base, config.tls)
        changed = config != self.current
        self.path, self.current, self._stamp = path, config, stamp
        self._failed_stamp = None
        if self._watch_period is not None:
            self.start_watching(self._watch_period)
        if changed:
            log.info(
                "web_config_loaded",
                listener=self.name,
                path=str(path) if path else None,
                tls=config.tls is not None,
                users=len(config.users),
            )

    async def reload(self) -> str | None:
        """Re-read the current path now; the error (and the old file stays) or None."""
        async with self._lock:
            try:
                commit = await self.prepare(self.path)
            except WebConfigError as exc:
                self.failed(str(exc))
                return str(exc)
            commit()
            return None

    def failed(self, error: str) -> None:
        log.error("web_config_reload_failed", listener=self.name, error=error)
        if self._on_failure is not None:
            self._on_failure(self.name)

    def start_watching(self, period: float = WATCH_SECONDS) -> None:
        self._watch_period = period
        if self.path is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(period))

    async def _watch(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                stamp = await asyncio.to_thread(_identity, self.current.watched())
                if stamp == self._stamp or stamp == self._failed_stamp:
                    continue
                error = await self.reload()
                if error is not None:
                    # Logged and counted once per broken state, not once a second.
                    self._failed_stamp = stamp
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watcher die quietly
                log.exception("web_config_watch_failed", listener=self.name)
                await asyncio.sleep(period)

    async def stop(self) -> None:
        self._watch_period = None
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
