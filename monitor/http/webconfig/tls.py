"""The TLS context of a listener, built from a file's ``tls_server_config``."""

from __future__ import annotations

import ssl

from monitor.http.webconfig.settings import (
    CLIENT_AUTH_TYPES,
    DEFAULT_CIPHERS,
    TLS_VERSIONS,
    TlsSettings,
    WebConfigError,
)


def error_reason(exc: BaseException) -> str:
    """Why a file could not be read or loaded, in a few words (never its content)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


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
        reason = error_reason(exc)
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
            reason = error_reason(exc)
            raise WebConfigError(
                f"{prefix}.client_ca_file: cannot load {tls.client_ca_file}: {reason}"
            ) from None
    return context
