"""Credentials (docs/trtc-api.md): the refresh arithmetic, every source against the simulator's
STS and metadata service, the auto chain's order, the provider's background refresh, the
simulator's temporary credentials, the alert condition and the ``credentials`` command."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from monitor.alerts.conditions import (
    AccountHealth,
    credentials_expiring_firing,
    observe_credentials,
)
from monitor.alerts.texts import credentials_expiring_annotations
from monitor.cli import main
from monitor.config import AccountConfig, ConfigError, check_config, parse_config
from monitor.credentials import (
    CredentialsError,
    Issued,
    NoCredentials,
    NotPresent,
    RefreshEvent,
    RefreshingProvider,
    new_source,
    resolve_once,
)
from monitor.credentials.chain import ChainSource
from monitor.credentials.cvm_role import CvmRoleSource
from monitor.credentials.env import EnvSource
from monitor.credentials.oidc import OidcSource
from monitor.credentials.profile import ProfileSource, read_profile
from monitor.credentials.refresh import refresh_due, refresh_lead, retry_delay
from monitor.credentials.sts import assume_role
from monitor.log import configure_logging, set_secrets
from monitor.models import Outcome
from monitor.secrets import Credentials
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    Fault,
    FaultKind,
    Simulator,
    SimulatorControl,
)
from monitor.trtc.client import Endpoint, TrtcClient

ROLE_ARN = "qcs::cam::uin/100000000001:roleName/trtc-monitor"
OTHER_ROLE = "qcs::cam::uin/100000000002:roleName/cross-account"
WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.web-identity-token-one"
BASE = Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)


def account(**settings: Any) -> AccountConfig:
    return AccountConfig.model_validate(settings)


def tke_env(tmp_path: Path, token: str = WEB_TOKEN) -> dict[str, str]:
    token_file = tmp_path / "web-identity-token"
    token_file.write_text(token + "\n")
    return {
        "TKE_REGION": "ap-guangzhou",
        "TKE_PROVIDER_ID": "cls-abcdefgh",
        "TKE_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "TKE_ROLE_ARN": ROLE_ARN,
    }


def write_profile(home: Path, text: str) -> Path:
    path = home / ".tencentcloud" / "credentials"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(seed=7, credential_lifetime=600, metadata_role="monitor-cvm-role")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def describe_with(
    session: aiohttp.ClientSession, sim: Simulator, credentials: Credentials
) -> tuple[Outcome, str]:
    """One DescribeCloudRecording of a live task with ``credentials``: (outcome, code)."""
    task_id = sim.add_task(1400000001)
    result = await TrtcClient(session).describe_cloud_recording(
        endpoint=Endpoint.parse(sim.url),
        credentials=credentials,
        region="ap-guangzhou",
        sdk_app_id=1400000001,
        task_id=task_id,
    )
    return result.outcome, result.code


# ---------------------------------------------------------------------------------------------
# when to refresh, how to back off (pure)


class TestRefreshArithmetic:
    @pytest.mark.parametrize(
        ("lifetime", "lead"),
        [
            (7200.0, 1440.0),  # a fifth (24m) comes before five minutes
            (3600.0, 720.0),
            (1500.0, 300.0),  # both the same
            (600.0, 300.0),  # five minutes come first
            (20.0, 10.0),  # never in the first half of the lifetime
            (0.0, 0.0),
        ],
    )
    def test_a_fifth_of_the_lifetime_or_five_minutes_whichever_comes_first(
        self, lifetime: float, lead: float
    ) -> None:
        assert refresh_lead(lifetime) == pytest.approx(lead)
        assert refresh_due(1000.0, 1000.0 + lifetime) == pytest.approx(1000.0 + lifetime - lead)

    def test_backoff_doubles_up_to_a_cap_and_is_jittered_over_its_upper_half(self) -> None:
        lows = [retry_delay(n, 0.0, remaining=1e9) for n in range(1, 10)]
        highs = [retry_delay(n, 0.999999, remaining=1e9) for n in range(1, 10)]
        assert lows[:4] == [0.5, 1.0, 2.0, 4.0]
        assert highs[:4] == pytest.approx([1.0, 2.0, 4.0, 8.0])
        assert max(highs) == pytest.approx(60.0)
        assert max(retry_delay(n, 0.999999, remaining=1e9) for n in range(1, 10)) == (
            pytest.approx(60.0)
        )
        assert all(low <= high for low, high in zip(lows, highs, strict=True))

    def test_while_valid_a_retry_comes_within_half_the_time_left(self) -> None:
        assert retry_delay(8, 0.99, remaining=10.0) <= 5.0
        assert retry_delay(8, 0.99, remaining=0.1) <= 0.5  # a floor, not a busy loop
        assert retry_delay(8, 0.0, remaining=0.1) > 0.0
        # expired, or nothing in use: every poll fails meanwhile, so retries come sooner
        assert retry_delay(3, 0.0, remaining=-5.0) == 2.0
        assert retry_delay(9, 0.999999, remaining=-5.0) == pytest.approx(10.0)
        assert retry_delay(9, 0.999999, remaining=None) == pytest.approx(10.0)
        assert retry_delay(9, 0.999999, remaining=float("inf")) == pytest.approx(60.0)


# ---------------------------------------------------------------------------------------------
# the provider around a source (real event loop, a scripted source)


class ScriptedSource:
    """Answers with fresh credentials of ``lifetime`` seconds, or fails while ``failing``;
    ``gate`` holds every fetch until set (a slow STS)."""

    name = "scripted"

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.failing = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0
        self.serial = 0

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        self.calls += 1
        await self.gate.wait()
        if self.failing:
            raise CredentialsError("scripted", "STS AssumeRole failed: InternalError")
        self.serial += 1
        return Issued(
            Credentials(f"AKIDTMP{self.serial}", f"key-{self.serial}-secret", f"tok-{self.serial}"),
            "scripted",
            time.time() + self.lifetime,
        )


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class TestRefreshingProvider:
    async def test_credentials_are_replaced_before_they_expire(
        self, session: aiohttp.ClientSession
    ) -> None:
        source = ScriptedSource(lifetime=2.0)
        events: list[RefreshEvent] = []
        provider = RefreshingProvider("a", source, observer=events.append)
        await provider.start(session)
        try:
            first = provider.current()
            assert first is not None
            assert first.secret_id == "AKIDTMP1"
            # refreshed at half the lifetime: a second set while the first is still valid
            await wait_until(lambda: source.serial >= 3)
            seen = provider.current()
            assert seen is not None
            assert seen.secret_id != "AKIDTMP1"
        finally:
            await provider.stop()
        assert [e.outcome for e in events[:3]] == ["success"] * 3
        assert all(not e.failing for e in events)

    async def test_a_slow_refresh_never_makes_current_wait(
        self, session: aiohttp.ClientSession
    ) -> None:
        source = ScriptedSource(lifetime=4.0)
        provider = RefreshingProvider("a", source)
        await provider.start(session)
        try:
            source.gate.clear()  # the next fetch hangs
            await wait_until(lambda: source.calls >= 2)
            # a refresh is in flight and stuck; the credentials in use are still answered
            credentials = provider.current()
            assert credentials is not None
            assert credentials.secret_id == "AKIDTMP1"
            assert await provider.get() == credentials
            source.gate.set()
            await wait_until(lambda: source.serial >= 2)
        finally:
            await provider.stop()

    async def test_failures_keep_the_old_credentials_until_expiry_then_recover(
        self, session: aiohttp.ClientSession
    ) -> None:
        source = ScriptedSource(lifetime=3.0)
        events: list[RefreshEvent] = []
        provider = RefreshingProvider("a", source, observer=events.append, wait_timeout=0.5)
        await provider.start(session)
        try:
            source.failing = True
            first = provider.current()
            assert first is not None
            await wait_until(lambda: any(e.outcome == "failure" for e in events))
            assert provider.failing
            assert provider.current() == first  # still valid: still in use
            await wait_until(lambda: provider.current() is None)  # expired now
            with pytest.raises(CredentialsError) as info:
                await provider.get()
            assert "expired" in str(info.value)
            assert "InternalError" in str(info.value)
            source.failing = False
            await wait_until(lambda: provider.current() is not None)
            assert await provider.get() != first
            assert not provider.failing
        finally:
            await provider.stop()
        failures = [e for e in events if e.outcome == "failure"]
        assert failures
        assert all(e.failing and e.error for e in failures)
        assert events[-1].outcome == "success"
        assert not events[-1].failing

    async def test_get_waits_for_the_first_resolution(self, session: aiohttp.ClientSession) -> None:
        source = ScriptedSource(lifetime=60.0)
        source.gate.clear()
        provider = RefreshingProvider("a", source)
        provider.launch(session)
        try:
            assert provider.current() is None
            waiting = asyncio.ensure_future(provider.get())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            source.gate.set()
            assert (await waiting).secret_id == "AKIDTMP1"
        finally:
            await provider.stop()

    async def test_an_unstarted_provider_says_so(self) -> None:
        provider = RefreshingProvider("a", ScriptedSource(lifetime=60.0))
        assert provider.current() is None
        with pytest.raises(CredentialsError, match="not started"):
            await provider.get()


# ---------------------------------------------------------------------------------------------
# each source against the simulator


class TestSources:
    async def test_env_reads_the_standard_variables_with_an_optional_token(
        self, session: aiohttp.ClientSession
    ) -> None:
        env = {"TENCENTCLOUD_SECRET_ID": "AKIDenv", "TENCENTCLOUD_SECRET_KEY": "env-key-1"}
        issued = await EnvSource(env).fetch(session)
        assert issued.credentials == Credentials("AKIDenv", "env-key-1")
        assert issued.source == "env"
        assert issued.expires_at is None
        issued = await EnvSource({**env, "TENCENTCLOUD_SESSION_TOKEN": "tok-1"}).fetch(session)
        assert issued.credentials.token == "tok-1"
        with pytest.raises(NotPresent, match="TENCENTCLOUD_SECRET_KEY"):
            await EnvSource({"TENCENTCLOUD_SECRET_ID": "AKIDenv"}).fetch(session)

    async def test_the_profile_files_named_section_is_read(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        path = write_profile(
            tmp_path,
            "[default]\nsecret_id = AKIDdefault\nsecret_key = default-key\n\n"
            "[monitor]\nsecret_id = AKIDmonitor\nsecret_key =  monitor-key  \n",
        )
        issued = await ProfileSource("monitor", [path]).fetch(session)
        assert issued.credentials == Credentials("AKIDmonitor", "monitor-key")
        assert issued.source == "profile"
        assert read_profile([path], "default") == Credentials("AKIDdefault", "default-key")
        with pytest.raises(NotPresent, match=r"has no \[staging\] section"):
            read_profile([path], "staging")

    def test_the_profile_falls_back_to_the_system_file_and_says_what_is_missing(
        self, tmp_path: Path
    ) -> None:
        missing = tmp_path / "home" / ".tencentcloud" / "credentials"
        system = tmp_path / "etc-credentials"
        system.write_text("[default]\nsecret_id = AKIDsys\n")
        with pytest.raises(CredentialsError, match="lacks secret_key") as info:
            read_profile([missing, system], "default")
        assert not isinstance(info.value, NotPresent)
        with pytest.raises(NotPresent, match="no file at"):
            read_profile([missing], "default")
        system.write_text("not an ini file = [\n")
        with pytest.raises(CredentialsError, match="not a valid INI file"):
            read_profile([system], "default")

    async def test_oidc_exchanges_the_token_file_unsigned_and_rereads_it_each_time(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        env = tke_env(tmp_path)
        source = OidcSource(
            sts_endpoint=Endpoint.parse(sim.url),
            session_name="trtc-monitor",
            duration=7200,
            environ=env,
        )
        first = await source.fetch(session)
        assert first.source == "oidc"
        issued = sim.issuer.issued[first.credentials.secret_id]
        assert (issued.kind, issued.role, issued.base_secret_id) == (
            "AssumeRoleWithWebIdentity",
            ROLE_ARN,
            "",  # nobody signed it
        )
        assert first.expires_at == issued.expires_at
        assert WEB_TOKEN in first.extra_secrets  # the redactor hides the token too
        # the kubelet rotates the projected token: the next exchange presents the new one
        Path(env["TKE_WEB_IDENTITY_TOKEN_FILE"]).write_text("rotated-web-identity-token\n")
        second = await source.fetch(session)
        assert sim.issuer.web_identity_seen == [WEB_TOKEN, "rotated-web-identity-token"]
        assert second.credentials != first.credentials
        assert await describe_with(session, sim, second.credentials) == (Outcome.OK, "")

    async def test_oidc_is_absent_without_the_four_variables(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        env = tke_env(tmp_path)
        del env["TKE_ROLE_ARN"]
        source = OidcSource(
            sts_endpoint=Endpoint.parse("http://127.0.0.1:9"),
            session_name="x1",
            duration=900,
            environ=env,
        )
        with pytest.raises(NotPresent, match="TKE_ROLE_ARN not set"):
            await source.fetch(session)

    async def test_a_rejected_web_identity_token_is_an_error_with_the_code(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        sim.issuer.web_identity_tokens = {"only-this-token"}
        source = OidcSource(
            sts_endpoint=Endpoint.parse(sim.url),
            session_name="trtc-monitor",
            duration=900,
            environ=tke_env(tmp_path),
        )
        with pytest.raises(CredentialsError) as info:
            await source.fetch(session)
        assert "InvalidParameter.WebIdentityTokenError" in str(info.value)
        assert "RequestId" in str(info.value)
        assert WEB_TOKEN not in str(info.value)

    async def test_cvm_role_reads_the_role_then_its_credentials(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        issued = await CvmRoleSource(sim.url).fetch(session)
        assert issued.source == "cvm_role"
        record = sim.issuer.issued[issued.credentials.secret_id]
        assert (record.kind, record.role) == ("metadata", "monitor-cvm-role")
        assert issued.expires_at == record.expires_at
        # the service hands out the same credentials until it rotates them
        again = await CvmRoleSource(sim.url).fetch(session)
        assert again.credentials == issued.credentials
        assert await describe_with(session, sim, issued.credentials) == (Outcome.OK, "")

    async def test_cvm_role_without_a_bound_role_or_service_is_absent(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        sim.issuer.metadata_role = None
        with pytest.raises(NotPresent, match="no CAM role"):
            await CvmRoleSource(sim.url).fetch(session)
        with pytest.raises(NotPresent, match="unreachable"):
            await CvmRoleSource("http://127.0.0.1:9").fetch(session)

    async def test_a_hanging_metadata_service_times_out(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        sim.faults.add(Fault(FaultKind.TIMEOUT, actions=frozenset({"MetadataCredentials"})))
        with pytest.raises(CredentialsError, match="did not answer the role name within"):
            await CvmRoleSource(sim.url, timeout=0.3).fetch(session)
        sim.faults.clear()
        sim.faults.add(
            Fault(
                FaultKind.HTTP_ERROR,
                status=503,
                count=1,
                actions=frozenset({"MetadataCredentials"}),
            )
        )
        with pytest.raises(CredentialsError, match="HTTP 503"):
            await CvmRoleSource(sim.url).fetch(session)

    async def test_assume_role_is_signed_with_the_base_credentials_for_service_sts(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        issued = await assume_role(
            session,
            endpoint=Endpoint.parse(sim.url),
            base=BASE,
            role_arn=OTHER_ROLE,
            session_name="trtc-monitor",
            duration=3600,
            source="static+role",
        )
        record = sim.issuer.issued[issued.credentials.secret_id]
        assert (record.kind, record.role, record.base_secret_id, record.session_name) == (
            "AssumeRole",
            OTHER_ROLE,
            DEFAULT_SECRET_ID,
            "trtc-monitor",
        )
        assert DEFAULT_SECRET_KEY in issued.extra_secrets
        wrong = Credentials(DEFAULT_SECRET_ID, "not-the-key")
        with pytest.raises(CredentialsError, match=r"AuthFailure\.SignatureFailure"):
            await assume_role(
                session,
                endpoint=Endpoint.parse(sim.url),
                base=wrong,
                role_arn=OTHER_ROLE,
                session_name="trtc-monitor",
                duration=3600,
                source="static+role",
            )

    async def test_a_temporary_base_assumes_a_role_with_its_token(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        source = new_source(
            account(
                credentials="cvm_role",
                metadata_endpoint=sim.url,
                role_arn=OTHER_ROLE,
                sts_endpoint=sim.url,
            ),
            None,
        )
        issued = await source.fetch(session)
        assert issued.source == "cvm_role+role"
        record = sim.issuer.issued[issued.credentials.secret_id]
        base = sim.issuer.issued[record.base_secret_id]
        assert (record.kind, base.kind) == ("AssumeRole", "metadata")
        assert await describe_with(session, sim, issued.credentials) == (Outcome.OK, "")

    async def test_sts_failing_or_hanging_is_reported(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        sts = frozenset({"AssumeRole"})
        sim.faults.add(Fault(FaultKind.INTERNAL_ERROR, actions=sts, count=1))
        kwargs: dict[str, Any] = {
            "endpoint": Endpoint.parse(sim.url),
            "base": BASE,
            "role_arn": OTHER_ROLE,
            "session_name": "trtc-monitor",
            "duration": 900,
            "source": "static+role",
        }
        with pytest.raises(CredentialsError, match="STS AssumeRole failed: InternalError"):
            await assume_role(session, **kwargs)
        sim.faults.add(Fault(FaultKind.TIMEOUT, actions=sts, count=1, hold=5))
        with pytest.raises(CredentialsError, match=r"timed out after 0\.3s"):
            await assume_role(session, request_timeout=0.3, **kwargs)
        assert (await assume_role(session, **kwargs)).source == "static+role"


# ---------------------------------------------------------------------------------------------
# the auto chain


class TestAutoChain:
    async def test_oidc_comes_before_the_nodes_cvm_role(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        config = account(sts_endpoint=sim.url, metadata_endpoint=sim.url)
        source = new_source(config, None, environ=tke_env(tmp_path), home=tmp_path)
        issued = await source.fetch(session)
        assert issued.source == "oidc"
        assert sim.issuer.issued[issued.credentials.secret_id].kind == "AssumeRoleWithWebIdentity"
        # without workload identity the same chain falls to the node's role
        source = new_source(config, None, environ={}, home=tmp_path)
        assert (await source.fetch(session)).source == "cvm_role"

    async def test_the_first_present_source_answers_in_spec_order(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        write_profile(tmp_path, "[default]\nsecret_id = AKIDprofile\nsecret_key = p-key\n")
        env = {"TENCENTCLOUD_SECRET_ID": "AKIDenv", "TENCENTCLOUD_SECRET_KEY": "env-key"}
        config = account(sts_endpoint=sim.url, metadata_endpoint=sim.url)
        static = Credentials("AKIDstatic", "static-key")

        async def answer(static: Credentials | None, environ: dict[str, str]) -> str:
            source = new_source(config, static, environ=environ, home=tmp_path)
            return (await source.fetch(session)).source

        tke = tke_env(tmp_path)
        assert await answer(static, {**env, **tke}) == "static"
        assert await answer(None, {**env, **tke}) == "env"
        assert await answer(None, tke) == "oidc"
        assert await answer(None, {}) == "profile"
        (tmp_path / ".tencentcloud" / "credentials").unlink()
        assert await answer(None, {}) == "cvm_role"

    async def test_a_present_source_that_fails_is_not_skipped(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        # Falling through to the CVM role would monitor silently with the node's identity.
        sim.issuer.web_identity_tokens = {"another-token"}
        config = account(sts_endpoint=sim.url, metadata_endpoint=sim.url)
        source = new_source(config, None, environ=tke_env(tmp_path), home=tmp_path)
        with pytest.raises(CredentialsError) as info:
            await source.fetch(session)
        assert info.value.source == "oidc"

    async def test_nothing_present_names_every_source_tried(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        sim.issuer.metadata_role = None
        config = account(metadata_endpoint=sim.url)
        source = new_source(config, None, environ={}, home=tmp_path)
        assert isinstance(source, ChainSource)
        with pytest.raises(NoCredentials) as info:
            await source.fetch(session)
        message = str(info.value)
        for part in ("env (", "oidc (", "profile (", "cvm_role ("):
            assert part in message
        assert [absent.source for absent in info.value.tried] == [
            "env",
            "oidc",
            "profile",
            "cvm_role",
        ]

    async def test_a_named_source_is_used_alone(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        env = {"TENCENTCLOUD_SECRET_ID": "AKIDenv", "TENCENTCLOUD_SECRET_KEY": "env-key"}
        source = new_source(
            account(credentials="cvm_role", metadata_endpoint=sim.url), None, environ=env
        )
        assert (await source.fetch(session)).source == "cvm_role"
        source = new_source(account(credentials="profile"), None, environ=env, home=tmp_path)
        with pytest.raises(NotPresent):
            await source.fetch(session)


# ---------------------------------------------------------------------------------------------
# the simulator's temporary credentials


class TestSimulatorCredentials:
    async def test_temporary_credentials_work_with_their_token_until_they_expire(
        self, session: aiohttp.ClientSession
    ) -> None:
        sim = Simulator(seed=3, credential_lifetime=2)
        await sim.start()
        try:
            issued = await assume_role(
                session,
                endpoint=Endpoint.parse(sim.url),
                base=BASE,
                role_arn=ROLE_ARN,
                session_name="trtc-monitor",
                duration=7200,
                source="static+role",
            )
            assert issued.expires_at is not None
            assert issued.expires_at - time.time() <= 2
            creds = issued.credentials
            assert await describe_with(session, sim, creds) == (Outcome.OK, "")
            without_token = Credentials(creds.secret_id, creds.secret_key)
            assert await describe_with(session, sim, without_token) == (
                Outcome.AUTH,
                "AuthFailure.TokenFailure",
            )
            await asyncio.sleep(max(0.0, issued.expires_at - time.time()) + 0.2)
            assert await describe_with(session, sim, creds) == (
                Outcome.AUTH,
                "AuthFailure.TokenFailure",
            )
            # expired credentials cannot assume a role either
            with pytest.raises(CredentialsError, match=r"AuthFailure\.TokenFailure"):
                await assume_role(
                    session,
                    endpoint=Endpoint.parse(sim.url),
                    base=creds,
                    role_arn=ROLE_ARN,
                    session_name="trtc-monitor",
                    duration=900,
                    source="x",
                )
        finally:
            await sim.stop()

    async def test_sts_checks_its_version_signature_and_parameters(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        async def post(action: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
            base = {
                "Content-Type": "application/json",
                "X-TC-Action": action,
                "X-TC-Version": "2018-08-13",
                "X-TC-Region": "ap-guangzhou",
                "X-TC-Timestamp": str(int(time.time())),
                "Authorization": "SKIP",
            }
            async with session.post(sim.url + "/", json=body, headers={**base, **headers}) as r:
                assert r.status == 200
                data: dict[str, Any] = (await r.json())["Response"]
                return data

        role = {"RoleArn": ROLE_ARN, "RoleSessionName": "trtc-monitor"}
        web = {**role, "ProviderId": "cls-1", "WebIdentityToken": "t"}
        assert (await post("AssumeRole", role))["Error"]["Code"] == (
            "AuthFailure.InvalidAuthorization"
        )
        answer = await post("AssumeRoleWithWebIdentity", web)
        assert set(answer["Credentials"]) == {"Token", "TmpSecretId", "TmpSecretKey"}
        assert isinstance(answer["ExpiredTime"], int)
        assert answer["Expiration"].endswith("Z")
        bad_version = await post("AssumeRoleWithWebIdentity", web, **{"X-TC-Version": "2019"})
        assert bad_version["Error"]["Code"] == "NoSuchVersion"
        for broken, code in (
            ({**web, "RoleArn": "arn:aws:iam::1:role/x"}, "InvalidParameter.ParamError"),
            ({**web, "DurationSeconds": 50000}, "InvalidParameterValue"),
            ({**web, "WebIdentityToken": ""}, "MissingParameter"),
        ):
            assert (await post("AssumeRoleWithWebIdentity", broken))["Error"]["Code"] == code

    async def test_the_control_surface_shows_issued_credentials_without_secrets(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        issued = await CvmRoleSource(sim.url).fetch(session)
        async with session.patch(
            sim.url + "/-/sim/settings", json={"credential_lifetime": 30}
        ) as r:
            assert (await r.json())["credential_lifetime"] == 30
        async with session.patch(
            sim.url + "/-/sim/settings", json={"credential_lifetime": -1}
        ) as r:
            assert r.status == 400
        async with SimulatorControl(sim.url) as control:
            settings = await control.settings(metadata_role="other-role")
            assert settings["metadata_role"] == "other-role"
            listed_by_client = (await control.issued_credentials())["credentials"]
        assert sim.issuer.lifetime == 30
        assert sim.issuer.metadata_role == "other-role"
        assert [c["kind"] for c in listed_by_client] == ["metadata"]
        async with session.get(sim.url + "/-/sim/credentials") as r:
            text = await r.text()
        listed = json.loads(text)["credentials"]
        assert [c["secret_id"] for c in listed] == [issued.credentials.secret_id]
        assert issued.credentials.secret_key not in text
        assert str(issued.credentials.token) not in text


# ---------------------------------------------------------------------------------------------
# configuration, the alert condition, redaction, the command


class TestConfiguration:
    def test_keys_of_section_4_are_accepted_with_their_defaults(self) -> None:
        config = parse_config("accounts: {a: {}}")
        a = config.accounts["a"]
        assert (a.credentials, a.profile, a.role_arn, a.role_session_name) == (
            "auto",
            "default",
            "",
            "trtc-monitor",
        )
        assert a.role_duration == 7200.0
        assert a.sts_endpoint == "sts.tencentcloudapi.com"
        assert a.metadata_endpoint == "http://metadata.tencentyun.com"
        assert config.alerts.credentials.before == 900.0
        assert not a.uses_static  # no keys: the chain looks at run time

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("credentials: vault", "credentials"),
            ("role_arn: arn:aws:iam::1:role/x", "invalid role_arn"),
            ("role_session_name: 'a b'", "invalid role_session_name"),
            ("role_duration: 1m", "between 15m and 12h"),
            ("metadata_endpoint: http://h/latest", "just scheme://host"),
            ("sts_endpoint: 'ftp://sts'", "scheme must be http or https"),
            ("{credentials: oidc, secret_key_env: K}", "only used with credentials static or"),
        ],
    )
    def test_invalid_settings_are_errors_naming_the_key(self, text: str, message: str) -> None:
        body = text if text.startswith("{") else "{" + text + "}"
        with pytest.raises(ConfigError) as info:
            parse_config(f"accounts:\n  a: {body}\n", "m.yaml")
        assert message in "\n".join(info.value.errors)
        assert all(e.startswith("m.yaml:2:") for e in info.value.errors)

    def test_check_config_explains_the_chain(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n  a: {}\n  b: {credentials: oidc, role_arn: " + OTHER_ROLE + "}\n"
            "  c: {secret_key_env: C_KEY, secret_id_env: C_ID}\n"
        )
        code, text = check_config(path, environ={}, syntax_only=True)
        assert code == 0, text
        lines = text.splitlines()
        a = lines[lines.index(next(x for x in lines if x.startswith("  a:"))) + 1]
        assert a == (
            "    credentials: auto: first present of env (TENCENTCLOUD_SECRET_ID/"
            "TENCENTCLOUD_SECRET_KEY), oidc (TKE_ROLE_ARN and TKE_WEB_IDENTITY_TOKEN_FILE via "
            "STS), profile [default] of ~/.tencentcloud/credentials or "
            "/etc/tencentcloud/credentials, cvm_role (metadata http://metadata.tencentyun.com)"
        )
        assert f"then assumes {OTHER_ROLE} for 2h via STS sts.tencentcloudapi.com" in text
        assert "static (key from environment variable C_KEY)" in text
        # only the static account's keys are looked for now; the others at run time
        warnings = [x for x in lines if x.startswith("warning:")]
        assert len(warnings) == 2
        assert all("accounts.c." in w for w in warnings)


class TestExpiringCondition:
    def test_fires_only_when_refresh_fails_within_the_warning_time(self) -> None:
        health = AccountHealth()
        assert credentials_expiring_firing(health, 1000.0, 900.0) is None  # nothing seen yet
        observe_credentials(health, failing=False, expires_at=1500.0, source="oidc")
        assert credentials_expiring_firing(health, 1000.0, 900.0) is False
        observe_credentials(
            health, failing=True, expires_at=2000.0, source="oidc", error="oidc: STS down"
        )
        assert credentials_expiring_firing(health, 1000.0, 900.0) is False  # 1000 s left
        assert credentials_expiring_firing(health, 1100.0, 900.0) is True
        assert credentials_expiring_firing(health, 2100.0, 900.0) is True  # already expired
        observe_credentials(health, failing=True, expires_at=None, source="env")
        assert credentials_expiring_firing(health, 1100.0, 900.0) is False  # permanent

    def test_the_alert_says_when_which_source_and_why(self) -> None:
        health = AccountHealth()
        observe_credentials(
            health,
            failing=True,
            expires_at=1_700_000_600.0,
            source="oidc",
            error="oidc: STS AssumeRoleWithWebIdentity failed: InternalError",
        )
        text = credentials_expiring_annotations("prod", health, 1_700_000_000.0, 900.0)
        assert text["summary"] == "Credentials of account prod expire soon and cannot be refreshed"
        assert "(source oidc) expire in 10m (at 2023-11-14T22:23:20Z)" in text["description"]
        assert (
            "failed: oidc: STS AssumeRoleWithWebIdentity failed: InternalError"
            in (text["description"])
        )


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("json", "debug", (), stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    set_secrets(())


class TestRedaction:
    async def test_temporary_secrets_are_hidden_from_logs_as_soon_as_they_are_issued(
        self,
        sim: Simulator,
        session: aiohttp.ClientSession,
        tmp_path: Path,
        captured_logs: io.StringIO,
    ) -> None:
        source = new_source(
            account(credentials="oidc", sts_endpoint=sim.url), None, environ=tke_env(tmp_path)
        )
        provider = RefreshingProvider("a", source)
        await provider.start(session)
        try:
            creds = provider.current()
            assert creds is not None
            assert creds.token is not None
            log = structlog.get_logger("test")
            log.error("oops", detail=f"key={creds.secret_key} token={creds.token}", web=WEB_TOKEN)
            logging.getLogger("plain").error("sent %s", creds.token)
        finally:
            await provider.stop()
        text = captured_logs.getvalue()
        assert "credentials_resolved" in text
        assert '"source": "oidc"' in text
        for secret in (creds.secret_key, creds.token, WEB_TOKEN):
            assert secret not in text
        assert text.count("[REDACTED]") >= 4


class TestCredentialsCommand:
    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["credentials", *argv])
        return code, out.getvalue(), err.getvalue()

    async def test_prints_each_accounts_source_and_expiry_never_a_secret(
        self, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in tke_env(tmp_path).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("A_ID", DEFAULT_SECRET_ID)
        monkeypatch.setenv("A_KEY", DEFAULT_SECRET_KEY)
        monkeypatch.setenv("A_TOKEN", "a-session-token-0123")
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n"
            f"  pod: {{sts_endpoint: '{sim.url}', metadata_endpoint: '{sim.url}'}}\n"
            f"  node: {{credentials: cvm_role, metadata_endpoint: '{sim.url}'}}\n"
            f"  keys: {{secret_id_env: A_ID, secret_key_env: A_KEY}}\n"
            f"  temp: {{secret_id_env: A_ID, secret_key_env: A_KEY, token_env: A_TOKEN}}\n"
            f"  cross: {{secret_id_env: A_ID, secret_key_env: A_KEY, role_arn: {OTHER_ROLE},"
            f" sts_endpoint: '{sim.url}'}}\n"
        )
        code, out, _ = await asyncio.to_thread(self.run, "-c", str(path))
        assert code == 0, out
        lines = dict(line.split(": ", 1) for line in out.splitlines())
        assert lines["pod"].startswith("source oidc, with session token; expire at ")
        assert lines["node"].startswith("source cvm_role, with session token; expire at ")
        assert lines["keys"] == "source static; do not expire"
        assert lines["temp"] == "source static, with session token; expiry not known"
        assert lines["cross"].startswith("source static+role, with session token; expire at ")
        assert "(in 10m)" in lines["pod"] or "(in 9m59s)" in lines["pod"]
        for cred in sim.issuer.history:
            assert cred.secret_key not in out
            assert cred.token not in out
        assert "a-session-token-0123" not in out
        assert DEFAULT_SECRET_KEY not in out
        assert WEB_TOKEN not in out
        code, out, _ = await asyncio.to_thread(self.run, "-c", str(path), "--account", "node")
        assert code == 0
        assert out.startswith("node: source cvm_role")

    async def test_exits_1_naming_what_was_tried(
        self, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TKE_ROLE_ARN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        sim.issuer.metadata_role = None
        path = tmp_path / "m.yaml"
        path.write_text(f"accounts:\n  lost: {{metadata_endpoint: '{sim.url}'}}\n")
        code, out, _ = await asyncio.to_thread(self.run, "-c", str(path))
        assert code == 1
        assert out.startswith("lost: no credentials: auto: no credentials found; tried env (")
        for part in ("oidc (", "profile (no file at", "cvm_role (no CAM role"):
            assert part in out
        code, _, err = await asyncio.to_thread(self.run, "-c", str(path), "--account", "nope")
        assert code == 2
        assert "no account named 'nope'" in err

    async def test_resolve_once_reports_a_missing_static_key(self) -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(CredentialsError) as info:
                await resolve_once(
                    "a",
                    account(secret_id_env="NOPE_ID", secret_key_env="NOPE_KEY"),
                    session,
                    environ={},
                )
        assert "environment variable NOPE_ID is not set" in str(info.value)


class TestKubernetesWorkloadIdentity:
    def test_the_deployment_runs_as_the_service_account_that_documents_the_tke_annotations(
        self,
    ) -> None:
        import yaml

        k8s = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
        account_text = (k8s / "serviceaccount.yaml").read_text(encoding="utf-8")
        service_account = yaml.safe_load(account_text)
        deployment = yaml.safe_load((k8s / "deployment.yaml").read_text(encoding="utf-8"))
        kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text(encoding="utf-8"))
        assert service_account["kind"] == "ServiceAccount"
        name = service_account["metadata"]["name"]
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        assert "serviceaccount.yaml" in kustomization["resources"]
        for annotation in (
            "tke.cloud.tencent.com/role-arn",
            "tke.cloud.tencent.com/audience",
            "tke.cloud.tencent.com/token-expiration",
        ):
            assert annotation in account_text
        # the example role in the comment is one the configuration would accept
        arn = account_text.split('role-arn: "', 1)[1].split('"', 1)[0]
        assert account(role_arn=arn).role_arn == arn
