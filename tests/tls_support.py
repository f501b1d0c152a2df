"""Certificates made with the openssl CLI, and a daemon served by its listeners in-process."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.http.listeners import Listeners
from tests.support import require_binary


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [require_binary("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60
    )


@dataclass(frozen=True)
class Ca:
    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "ca") -> Ca:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN=test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return Ca(cert, key)


def make_cert(ca: Ca, directory: Path, name: str, serial: int, *, client: bool = False) -> Ca:
    """A certificate for 127.0.0.1/localhost (server) or a client, signed by ``ca``."""
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    ext = directory / f"{name}.ext"
    usage = "clientAuth" if client else "serverAuth"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(serial), "-days", "2", "-out", str(cert), "-extfile", str(ext),
        cwd=directory,
    )  # fmt: skip
    return Ca(cert, key)


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def served_certificate(port: int, ca: Path) -> tuple[int, str]:
    """(serial, SHA-256 fingerprint) of the certificate a TLS port serves now."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        info = tls.getpeercert()
    assert der is not None
    assert info is not None
    return int(str(info["serialNumber"]), 16), hashlib.sha256(der).hexdigest()


@dataclass
class Served:
    daemon: Daemon
    listeners: Listeners

    @property
    def main(self) -> str:
        return self.listeners.urls["main"]

    @property
    def callbacks(self) -> str:
        return self.listeners.urls["callbacks"]


@asynccontextmanager
async def served_daemon(config_path: Path, web_config: Path | None = None) -> AsyncIterator[Served]:
    """A daemon from ``config_path`` served as ``trtc-monitor run`` serves it; always stopped."""
    config = load_config(config_path)
    daemon = Daemon(config, config_path)
    listeners = Listeners(config, web_config, daemon.metrics.registry)
    listeners.bind()
    try:
        await listeners.load()
        daemon.reload_hooks.append(listeners)
        await daemon.start()
        try:
            await listeners.start(daemon)
            yield Served(daemon, listeners)
        finally:
            await listeners.stop()
            await daemon.stop()
    finally:
        listeners.close()
