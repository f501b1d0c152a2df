"""The exporter-toolkit web configuration file: what it takes, what it refuses, basic auth's
cache, client certificates, and the callback listener's own TLS."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp
import pytest

from monitor.config import ConfigError, load_config
from monitor.http.webconfig import (
    CIPHER_SUITES,
    BasicAuth,
    WebConfigError,
    load_web_config,
    parse_basic,
)
from monitor.simulator import Simulator
from tests.support import wait_for_async
from tests.test_listeners import KEY, PATH, callbacks_extra, signed_started, write_config
from tests.tls_support import Ca, bcrypt_hash, make_ca, make_cert, served_daemon


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ca, Ca, Ca]:
    """A CA, a server certificate and a client certificate."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    server = make_cert(ca, directory, "server", serial=11)
    client = make_cert(ca, directory, "client", serial=12, client=True)
    return ca, server, client


def write(tmp: Path, text: str) -> Path:
    path = tmp / "web.yml"
    path.write_text(text)
    return path


def tls_block(server: Ca, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n{extra}"


def refused(path: Path, *, basic_auth_allowed: bool = True) -> str:
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path, basic_auth_allowed=basic_auth_allowed)
    return str(caught.value)


class TestFile:
    def test_a_full_file_is_read(self, tmp_path: Path, pki: tuple[Ca, Ca, Ca]) -> None:
        ca, server, _ = pki
        extra = (
            "  client_auth_type: RequireAndVerifyClientCert\n"
            f"  client_ca_file: {ca.cert}\n"
            "  min_version: TLS12\n  max_version: TLS13\n"
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
            "  prefer_server_cipher_suites: false\n"
            "http_server_config:\n  http2: false\n  headers:\n"
            "    X-Frame-Options: deny\n    Content-Security-Policy: \"default-src 'self'\"\n"
            f"basic_auth_users:\n  alice: {bcrypt_hash('a')}\n"
        )
        config = load_web_config(write(tmp_path, tls_block(server, extra)))
        assert config.tls is not None
        assert config.tls.ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256",)
        assert config.context is not None
        assert config.context.verify_mode == ssl.CERT_REQUIRED
        assert config.context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert set(config.users) == {"alice"}
        assert config.headers == {
            "X-Frame-Options": "deny",
            "Content-Security-Policy": "default-src 'self'",
        }

    def test_relative_files_are_relative_to_the_web_configuration(
        self, tmp_path: Path, pki: tuple[Ca, Ca, Ca]
    ) -> None:
        _, server, _ = pki
        (tmp_path / "s.crt").write_bytes(server.cert.read_bytes())
        (tmp_path / "s.key").write_bytes(server.key.read_bytes())
        text = "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n"
        config = load_web_config(write(tmp_path, text))
        assert config.tls is not None
        assert config.tls.cert_file == tmp_path / "s.crt"

    def test_every_go_cipher_suite_name_maps_to_one_openssl_knows(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for go, openssl in CIPHER_SUITES.items():
            context.set_ciphers(openssl)  # raises when OpenSSL does not know the name
            names = {c["name"] for c in context.get_ciphers()}
            assert openssl in names, go

    @pytest.mark.parametrize(
        ("text", "named"),
        [
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  nope: 1\n", "nope"),
            ("something_else: 1\n", "something_else"),
            ("http_server_config:\n  colour: red\n", "http_server_config.colour"),
            ("rate_limit: {interval: 1s, burst: 2}\n", "rate_limit"),
            ("tls_server_config:\n  cert: x\n", "tls_server_config.cert"),
            ("tls_server_config:\n  client_allowed_sans: [a]\n", "client_allowed_sans"),
            ("tls_server_config:\n  cert_file: a\n", "key_file"),
            ("basic_auth_users:\n  bob: hunter2\n", "basic_auth_users.bob"),
            ("basic_auth_users: [bob]\n", "basic_auth_users"),
            ("http_server_config:\n  headers:\n    Server: x\n", "Server"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
            (
                "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
                "X-Content-Type-Options",
            ),
            ("tls_server_config: [\n", "YAML"),
        ],
    )
    def test_what_exporter_toolkit_refuses_or_this_does_not_do_is_refused_by_name(
        self, tmp_path: Path, text: str, named: str
    ) -> None:
        message = refused(write(tmp_path, text))
        assert named in message
        assert str(tmp_path / "web.yml") in message
        assert "hunter2" not in message  # a password pasted by mistake is never shown

    @pytest.mark.parametrize(
        ("extra", "named"),
        [
            ("  client_auth_type: Sometimes\n", "client_auth_type"),
            ("  min_version: TLS14\n", "min_version"),
            ("  min_version: TLS13\n  max_version: TLS12\n", "min_version"),
            ("  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "TLS_RSA_WITH_RC4_128_SHA"),
            ("  client_ca_file: /etc/ssl/certs/ca-certificates.crt\n", "client_ca_file"),
        ],
    )
    def test_tls_settings_are_checked(
        self, tmp_path: Path, pki: tuple[Ca, Ca, Ca], extra: str, named: str
    ) -> None:
        _, server, _ = pki
        assert named in refused(write(tmp_path, tls_block(server, extra)))

    def test_unreadable_certificates_are_refused(
        self, tmp_path: Path, pki: tuple[Ca, Ca, Ca]
    ) -> None:
        _, server, _ = pki
        text = f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.cert}\n"
        assert "cannot load cert_file" in refused(write(tmp_path, text))
        missing = tls_block(Ca(tmp_path / "none.crt", server.key))
        assert "none.crt" in refused(write(tmp_path, missing))

    def test_the_callback_listener_takes_no_basic_auth(self, tmp_path: Path) -> None:
        path = write(tmp_path, f"basic_auth_users:\n  trtc: {bcrypt_hash('x')}\n")
        assert "basic_auth_users" in refused(path, basic_auth_allowed=False)

    def test_the_sample_file_is_valid(self, tmp_path: Path, pki: tuple[Ca, Ca, Ca]) -> None:
        _, server, _ = pki
        sample = (Path(__file__).parent.parent / "config" / "web-config.example.yml").read_text()
        text = sample.replace("/etc/trtc-monitor/tls/tls.crt", str(server.cert)).replace(
            "/etc/trtc-monitor/tls/tls.key", str(server.key)
        )
        config = load_web_config(write(tmp_path, text))
        assert config.tls is not None
        assert set(config.users) == {"prometheus"}
        assert config.headers["X-Frame-Options"] == "deny"

    def test_an_empty_file_means_nothing_to_do(self, tmp_path: Path) -> None:
        config = load_web_config(write(tmp_path, ""))
        assert config.tls is None and not config.users and not config.headers  # noqa: PT018


class TestBasicAuth:
    def header(self, user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def test_successes_are_cached_failures_are_not(self, tmp_path: Path) -> None:
        config = load_web_config(write(tmp_path, f"basic_auth_users:\n  a: {bcrypt_hash('pw')}\n"))
        auth = BasicAuth(size=2)
        assert await auth.check(config, self.header("a", "pw"))
        assert await auth.check(config, self.header("a", "pw"))
        assert auth.bcrypt_checks == 1
        assert not await auth.check(config, self.header("a", "wrong"))
        assert not await auth.check(config, self.header("a", "wrong"))
        assert auth.bcrypt_checks == 3
        # An unknown user costs a bcrypt too (against a decoy), and is never let in.
        assert not await auth.check(config, self.header("zed", "pw"))
        assert auth.bcrypt_checks == 4
        assert len(auth) == 1

    async def test_the_cache_is_bounded_and_follows_the_stored_hash(self, tmp_path: Path) -> None:
        users = {f"u{i}": bcrypt_hash(f"p{i}") for i in range(4)}
        text = "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in users.items())
        config = load_web_config(write(tmp_path, text))
        auth = BasicAuth(size=2)
        for i in range(4):
            assert await auth.check(config, self.header(f"u{i}", f"p{i}"))
        assert len(auth) == 2
        # A new hash for u3 (its password changed): the cached success no longer counts.
        changed = load_web_config(write(tmp_path, f"basic_auth_users:\n  u3: {bcrypt_hash('n')}\n"))
        assert not await auth.check(changed, self.header("u3", "p3"))
        assert await auth.check(changed, self.header("u3", "n"))

    @pytest.mark.parametrize(
        "header", ["Bearer abc", "Basic ***", "Basic " + base64.b64encode(b"nocolon").decode()]
    )
    def test_malformed_credentials(self, header: str) -> None:
        assert parse_basic(header) is None


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_process import daemon_env

    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    for name, value in daemon_env().items():
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("env")
class TestServed:
    async def test_client_certificates_when_the_file_requires_them(
        self, tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca, Ca]
    ) -> None:
        ca, server, client = pki
        extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca.cert}\n"
        web = write(tmp_path, tls_block(server, extra))
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
        async with served_daemon(config, web) as served:
            without = ssl.create_default_context(cafile=str(ca.cert))
            with_cert = ssl.create_default_context(cafile=str(ca.cert))
            with_cert.load_cert_chain(client.cert, client.key)
            async with aiohttp.ClientSession() as session:
                async with session.get(served.main + "/-/healthy", ssl=with_cert) as r:
                    assert r.status == 200
                with pytest.raises(aiohttp.ClientError):
                    async with session.get(served.main + "/-/healthy", ssl=without) as r:
                        await r.read()

    async def test_the_callback_listener_has_its_own_tls_and_headers(
        self, tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca, Ca]
    ) -> None:
        ca, server, _ = pki
        headers = "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=60\n"
        web = write(tmp_path, tls_block(server) + headers)
        extra = callbacks_extra("127.0.0.1:0", web)
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0", extra)
        async with served_daemon(config) as served, aiohttp.ClientSession() as session:
            assert served.main.startswith("http://")
            assert served.callbacks.startswith("https://") and served.callbacks.endswith(PATH)  # noqa: PT018
            context = ssl.create_default_context(cafile=str(ca.cert))
            raw, signed = signed_started("task-tls")
            async with session.post(served.callbacks, data=raw, headers=signed, ssl=context) as r:
                assert r.status == 200
                assert r.headers["Strict-Transport-Security"] == "max-age=60"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
            async with session.get(served.main + "/-/healthy") as r:
                assert "Strict-Transport-Security" not in r.headers

    async def test_basic_auth_on_the_callback_listener_stops_the_start(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        web = write(tmp_path, f"basic_auth_users:\n  trtc: {bcrypt_hash('x')}\n")
        config = write_config(
            tmp_path, simulator.url, "127.0.0.1:0", callbacks_extra("127.0.0.1:0", web)
        )
        with pytest.raises(WebConfigError, match="basic_auth_users"):
            async with served_daemon(config):
                pass
        assert not (tmp_path / "monitor.db").exists()

    async def test_turning_tls_off_on_reload_is_refused(
        self, tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca, Ca]
    ) -> None:
        _, server, _ = pki
        web = write(tmp_path, tls_block(server))
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
        async with served_daemon(config, web) as served:
            web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
            result = await served.daemon.reload()
            assert not result.ok
            assert "restart" in result.errors[0]
            assert served.listeners.main.current.tls is not None

    async def test_a_file_named_on_reload_is_applied_and_then_watched(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
        web = write(tmp_path, f"basic_auth_users:\n  a: {bcrypt_hash('pa')}\n")

        def login(user: str, password: str) -> dict[str, str]:
            raw = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}

        async with served_daemon(config) as served, aiohttp.ClientSession() as session:
            healthy = served.main + "/-/healthy"
            async with session.get(healthy) as r:
                assert r.status == 200
            config.write_text(
                config.read_text().replace("server:\n", f"server:\n  web_config_file: {web}\n")
            )
            result = await served.daemon.reload()
            assert result.ok, result.errors
            async with session.get(healthy) as r:
                assert r.status == 401
            async with session.get(healthy, headers=login("a", "pa")) as r:
                assert r.status == 200
            web.write_text(f"basic_auth_users:\n  b: {bcrypt_hash('pb')}\n")

            async def b_in() -> bool:
                async with session.get(healthy, headers=login("b", "pb")) as r:
                    return r.status == 200

            await wait_for_async(b_in, timeout=20, what="the changed file taken")


class TestConfigKeys:
    def test_callbacks_web_config_file_needs_callbacks_listen(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text("callbacks:\n  key_env: K\n  web_config_file: /w.yml\n")
        with pytest.raises(ConfigError, match=r"callbacks\.listen"):
            load_config(path)

    def test_callbacks_listen_needs_callbacks_on(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text('callbacks:\n  listen: "127.0.0.1:9878"\n')
        with pytest.raises(ConfigError, match="callbacks are off"):
            load_config(path)

    def test_callbacks_listen_on_the_main_port_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            'server:\n  listen: "0.0.0.0:9877"\n'
            'callbacks:\n  key_env: K\n  listen: "127.0.0.1:9877"\n'
        )
        with pytest.raises(ConfigError, match="same port"):
            load_config(path)
