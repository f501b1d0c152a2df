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

from monitor.http.webconfig.auth import AUTH_CACHE_SIZE, BasicAuth, parse_basic
from monitor.http.webconfig.file import load_web_config
from monitor.http.webconfig.live import WATCH_SECONDS, LiveWebConfig
from monitor.http.webconfig.settings import (
    ALLOWED_HEADERS,
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    DEFAULT_CIPHERS,
    TLS13_SUITES,
    TLS_VERSIONS,
    TlsSettings,
    WebConfig,
    WebConfigError,
)
from monitor.http.webconfig.tls import build_context, tune

__all__ = [
    "ALLOWED_HEADERS",
    "AUTH_CACHE_SIZE",
    "CIPHER_SUITES",
    "CLIENT_AUTH_TYPES",
    "DEFAULT_CIPHERS",
    "TLS13_SUITES",
    "TLS_VERSIONS",
    "WATCH_SECONDS",
    "BasicAuth",
    "LiveWebConfig",
    "TlsSettings",
    "WebConfig",
    "WebConfigError",
    "build_context",
    "load_web_config",
    "parse_basic",
    "tune",
]
