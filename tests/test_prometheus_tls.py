"""The daemon behind TLS and basic auth, as the exporter-toolkit web configuration sets them:
a real Prometheus scrapes it over HTTPS, a rotated certificate is served without a restart,
a broken file is refused and the running one stays."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from monitor.simulator import Simulator
from tests.support import free_port, promql, require_binary, run_process, wait_for_async
from tests.test_listeners import write_config
from tests.tls_support import (
    Ca,
    bcrypt_hash,
    make_ca,
    make_cert,
    served_certificate,
    served_daemon,
)

USER, PASSWORD = "prometheus", "scrape-pass-0123"
TOKEN = "test-api-token-0123456789"


def web_config_text(cert: Ca, users: dict[str, str], extra: str = "") -> str:
    lines = [
        "tls_server_config:",
        f"  cert_file: {cert.cert}",
        f"  key_file: {cert.key}",
        "basic_auth_users:",
        *(f"  {name}: {bcrypt_hash(password)}" for name, password in users.items()),
    ]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Ca, Ca]:
    ca = make_ca(tmp_path / "pki")
    return ca, make_cert(ca, tmp_path / "pki", "server", serial=1001)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_process import daemon_env

    for name, value in daemon_env().items():
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, value)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def client_ssl(ca: Ca) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert))


async def test_prometheus_scrapes_over_https_with_basic_auth(
    tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca]
) -> None:
    ca, server = pki
    web = tmp_path / "web-config.yml"
    web.write_text(web_config_text(server, {USER: PASSWORD}))
    port = free_port()
    config = write_config(tmp_path, simulator.url, f"127.0.0.1:{port}")
    async with served_daemon(config, web) as served:
        assert served.main == f"https://127.0.0.1:{port}"
        binary = require_binary("prometheus")
        prom_port = free_port()
        prom_dir = tmp_path / "prometheus"
        (prom_dir / "tsdb").mkdir(parents=True)
        prom_config = prom_dir / "prometheus.yml"
        prom_config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: trtc-monitor\n"
            "    scheme: https\n"
            f"    tls_config:\n      ca_file: {ca.cert}\n"
            f"    basic_auth:\n      username: {USER}\n      password: {PASSWORD}\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        argv = [
            binary,
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={prom_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ]
        url = f"http://127.0.0.1:{prom_port}"
        with run_process(argv, url, prom_dir / "prometheus.log", "/-/ready") as prom:

            async def up() -> bool:
                result = await asyncio.to_thread(promql, prom.url, 'up{job="trtc-monitor"}')
                return bool(result) and result[0]["value"][1] == "1"

            await wait_for_async(up, timeout=30, what="Prometheus up == 1 over HTTPS")
            series = await asyncio.to_thread(
                promql, prom.url, "trtc_monitor_http_basic_auth_failures_total"
            )
            assert {s["metric"]["reason"] for s in series} == {"missing", "invalid"}


async def test_credentials_are_required_on_every_path_and_https_only(
    tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca]
) -> None:
    ca, server = pki
    web = tmp_path / "web-config.yml"
    web.write_text(web_config_text(server, {USER: PASSWORD}))
    config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
    good = basic(USER, PASSWORD)
    async with (
        served_daemon(config, web) as served,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(ca))) as session,
    ):
        base = served.main
        with capture_logs() as logs:
            for path in ("/metrics", "/-/healthy", "/-/ready", "/", "/api/v1/tasks", "/nothing"):
                async with session.get(base + path) as r:
                    assert r.status == 401, path
                    assert r.headers["WWW-Authenticate"].startswith("Basic")
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                async with session.get(base + path, headers=basic(USER, "wrong-pw")) as r:
                    assert r.status == 401, path
                async with session.get(base + path, headers=basic("nobody", PASSWORD)) as r:
                    assert r.status == 401, path
        assert any(entry["event"] == "http_basic_auth_failed" for entry in logs)
        logged = repr(logs)
        assert "wrong-pw" not in logged
        assert PASSWORD not in logged
        assert "nobody" not in logged
        async with session.get(base + "/-/healthy", headers=good) as r:
            assert r.status == 200
        async with session.get(base + "/metrics", headers=good) as r:
            text = await r.text()
        assert 'trtc_monitor_http_basic_auth_failures_total{reason="missing"} 6.0' in text
        assert 'trtc_monitor_http_basic_auth_failures_total{reason="invalid"} 12.0' in text
        assert PASSWORD not in text
        # Successful checks are cached: many scrapes, one bcrypt for this password.
        checks = served.listeners.main.auth.bcrypt_checks
        for _ in range(5):
            async with session.get(base + "/metrics", headers=good) as r:
                assert r.status == 200
        assert served.listeners.main.auth.bcrypt_checks == checks
        # The API token is still needed for mutations, on top of basic auth.
        task = {"sdk_app_id": 1400000001, "task_id": "t-tls", "region": "ap-guangzhou"}
        async with session.post(base + "/api/v1/tasks", json=task, headers=good) as r:
            assert r.status == 401
            assert "bearer" in (await r.text()).lower()
        headers = {"X-API-Token": TOKEN}
        async with session.post(
            base + "/api/v1/tasks", json=task, headers={**good, **headers}
        ) as r:
            assert r.status == 201, await r.text()
        # Plain HTTP to the TLS port gets no HTTP answer.
        plain = base.replace("https://", "http://")
        async with aiohttp.ClientSession() as insecure:
            with pytest.raises(aiohttp.ClientError):
                async with insecure.get(plain + "/-/healthy", headers=good) as r:
                    await r.read()


async def test_a_rotated_certificate_and_a_new_user_take_effect_without_a_restart(
    tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca]
) -> None:
    ca, server = pki
    web = tmp_path / "web-config.yml"
    web.write_text(web_config_text(server, {USER: PASSWORD}))
    config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
    async with (
        served_daemon(config, web) as served,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(ca))) as session,
    ):
        port = int(served.main.rsplit(":", 1)[1])
        serial, fingerprint = await asyncio.to_thread(served_certificate, port, ca.cert)
        assert serial == 1001
        # Rotate as cert-manager does: new files written over the old ones.
        fresh = make_cert(ca, tmp_path / "pki", "server-next", serial=2002)
        server.cert.write_bytes(fresh.cert.read_bytes())
        server.key.write_bytes(fresh.key.read_bytes())

        async def rotated() -> bool:
            now = await asyncio.to_thread(served_certificate, port, ca.cert)
            return now[0] == 2002 and now[1] != fingerprint

        await wait_for_async(rotated, timeout=20, what="the new certificate served")
        # A new user in the file: taken without a restart (the file is watched).
        web.write_text(web_config_text(server, {USER: PASSWORD, "alice": "alice-pass"}))

        async def alice_in() -> bool:
            auth = basic("alice", "alice-pass")
            async with session.get(served.main + "/-/healthy", headers=auth) as r:
                return r.status == 200

        await wait_for_async(alice_in, timeout=20, what="the new user accepted")


async def test_a_broken_web_config_is_refused_and_the_running_one_stays(
    tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca]
) -> None:
    ca, server = pki
    web = tmp_path / "web-config.yml"
    web.write_text(web_config_text(server, {USER: PASSWORD}))
    config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
    good = basic(USER, PASSWORD)
    async with (
        served_daemon(config, web) as served,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(ca))) as session,
    ):
        failures = served.listeners.metrics.reload_failures.labels("main")
        web.write_text(web_config_text(server, {USER: PASSWORD}, "rate_limit: {burst: 1}\n"))
        headers = {"X-API-Token": TOKEN}
        async with session.post(served.main + "/-/reload", headers={**good, **headers}) as r:
            assert r.status == 422
            body = await r.json()
        assert any("rate_limit" in e and str(web) in e for e in body["error"]["errors"])
        assert failures._value.get() >= 1
        # The watcher sees the broken file too; it counts it once and keeps the old one.
        await asyncio.sleep(2.5)
        counted = failures._value.get()
        await asyncio.sleep(2.0)
        assert failures._value.get() == counted
        async with session.get(served.main + "/-/healthy", headers=good) as r:
            assert r.status == 200
        # A fixed file is taken by the next reload.
        web.write_text(web_config_text(server, {"bob": "bob-pass"}))
        async with session.post(served.main + "/-/reload", headers={**good, **headers}) as r:
            assert r.status == 200, await r.text()
        async with session.get(served.main + "/-/healthy", headers=good) as r:
            assert r.status == 401
        async with session.get(served.main + "/-/healthy", headers=basic("bob", "bob-pass")) as r:
            assert r.status == 200
