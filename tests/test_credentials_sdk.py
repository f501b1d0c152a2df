"""The official SDK's own credential classes as the oracle for the monitor's sources.

Each SDK class fetches from the simulator's STS and metadata service (running on its own loop
in a background thread), and the monitor's source fetches from the same place: both must get
the same thing, and both must be accepted by the TRTC API. Pointing the SDK at 127.0.0.1 takes
two substitutions and no change to its logic: the metadata URL is a class attribute
(``CVMRoleCredential._role_endpoint``), and the STS classes build an ``HttpProfile`` that
defaults to HTTPS, replaced here by one that defaults to plain HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.trtc.v20190722 import models, trtc_client

from monitor.credentials import Issued, Source
from monitor.credentials.cvm_role import CvmRoleSource
from monitor.credentials.env import EnvSource
from monitor.credentials.oidc import OidcSource
from monitor.credentials.profile import ProfileSource, default_paths
from monitor.credentials.role import AssumeRoleSource
from monitor.credentials.static import StaticSource
from monitor.credentials.sts import RoleSession, Sts
from monitor.secrets import Credentials
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator, ThreadedSimulator
from monitor.trtc.client import Endpoint

ROLE_ARN = "qcs::cam::uin/100000000001:roleName/trtc-monitor"
APP = 1400000001
LIFETIME = 600


class PlainHttpProfile(HttpProfile):  # type: ignore[misc]
    """The SDK's HttpProfile, speaking HTTP unless told otherwise (the simulator has no TLS)."""

    def __init__(self, protocol: str | None = None, **kwargs: Any) -> None:
        super().__init__(protocol=protocol or "http", **kwargs)


def host(url: str) -> str:
    return url.split("//", 1)[1]


@pytest.fixture
def server() -> Iterator[ThreadedSimulator]:
    sim = Simulator(seed=5, credential_lifetime=LIFETIME, metadata_role="monitor-cvm-role")
    threaded = ThreadedSimulator(sim)
    threaded.start()
    yield threaded
    threaded.stop()


@pytest.fixture
def sim(server: ThreadedSimulator) -> Simulator:
    assert server.sim is not None
    return server.sim


@pytest.fixture(autouse=True)
def plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credential, "HttpProfile", PlainHttpProfile)


def fetch(source: Source) -> Issued:
    async def run() -> Issued:
        async with aiohttp.ClientSession() as session:
            return await source.fetch(session)

    return asyncio.run(run())


def sdk_describe(url: str, cred: Any, task_id: str) -> str:
    """DescribeCloudRecording through the SDK's TRTC client with an SDK credential object."""
    http = HttpProfile(protocol="http", endpoint=host(url), reqTimeout=10)
    client = trtc_client.TrtcClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))
    req = models.DescribeCloudRecordingRequest()
    req.SdkAppId = APP
    req.TaskId = task_id
    return str(client.DescribeCloudRecording(req).Status)


def accepted_by_trtc(server: ThreadedSimulator, sim: Simulator, creds: Credentials) -> str:
    task_id = server.call(sim.add_task, APP)
    cred = credential.Credential(creds.secret_id, creds.secret_key, creds.token)
    return sdk_describe(server.url, cred, task_id)


class TestSameCredentialsAsTheSdk:
    def test_cvm_role_credentials_are_the_ones_the_sdk_reads(
        self, server: ThreadedSimulator, sim: Simulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(
            credential.CVMRoleCredential,
            "_role_endpoint",
            f"{server.url}/latest/meta-data/cam/security-credentials/",
        )
        sdk = credential.CVMRoleCredential()
        secret_id, secret_key, token = sdk.get_credential_info()
        assert sdk.get_role_name() == "monitor-cvm-role"
        ours = fetch(CvmRoleSource(server.url))
        assert ours.credentials == Credentials(secret_id, secret_key, token)
        assert ours.expires_at == sdk._expired_ts
        # the SDK's credential object itself is accepted by the TRTC API
        task_id = server.call(sim.add_task, APP)
        assert sdk_describe(server.url, sdk, task_id) in {"Idle", "InProgress"}

    def test_assume_role_gets_the_same_kind_of_credentials_as_the_sdk(
        self, server: ThreadedSimulator, sim: Simulator
    ) -> None:
        sdk = credential.STSAssumeRoleCredential(
            DEFAULT_SECRET_ID,
            DEFAULT_SECRET_KEY,
            ROLE_ARN,
            "trtc-monitor",
            7200,
            endpoint=host(server.url),
        )
        sdk_id, sdk_key, sdk_token = sdk.get_credential_info()
        ours = fetch(
            AssumeRoleSource(
                StaticSource(Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)),
                RoleSession(ROLE_ARN, "trtc-monitor", 7200),
                Sts(Endpoint.parse(server.url)),
            )
        )
        theirs_record = sim.issuer.issued[sdk_id]
        ours_record = sim.issuer.issued[ours.credentials.secret_id]
        for record in (theirs_record, ours_record):
            assert (record.kind, record.role, record.session_name, record.base_secret_id) == (
                "AssumeRole",
                ROLE_ARN,
                "trtc-monitor",
                DEFAULT_SECRET_ID,
            )
        assert (theirs_record.secret_key, theirs_record.token) == (sdk_key, sdk_token)
        assert ours.expires_at == ours_record.expires_at
        assert abs(ours_record.expires_at - theirs_record.expires_at) <= 2
        assert accepted_by_trtc(server, sim, ours.credentials) in {"Idle", "InProgress"}
        assert accepted_by_trtc(server, sim, Credentials(sdk_id, sdk_key, sdk_token)) in {
            "Idle",
            "InProgress",
        }

    def test_tke_oidc_reads_the_same_variables_and_token_file_as_the_sdk(
        self,
        server: ThreadedSimulator,
        sim: Simulator,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text("projected-service-account-token")
        env = {
            "TKE_REGION": "ap-shanghai",
            "TKE_PROVIDER_ID": "cls-oidc-1",
            "TKE_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "TKE_ROLE_ARN": ROLE_ARN,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        sdk = credential.DefaultTkeOIDCRoleArnProvider().get_credentials()
        sdk.endpoint = host(server.url)
        sdk_id, sdk_key, sdk_token = sdk.get_credential_info()
        ours = fetch(OidcSource(Sts(Endpoint.parse(server.url)), "trtc-monitor", 7200))
        theirs_record = sim.issuer.issued[sdk_id]
        ours_record = sim.issuer.issued[ours.credentials.secret_id]
        for record in (theirs_record, ours_record):
            assert (record.kind, record.role, record.base_secret_id) == (
                "AssumeRoleWithWebIdentity",
                ROLE_ARN,
                "",  # both unsigned
            )
        assert (theirs_record.secret_key, theirs_record.token) == (sdk_key, sdk_token)
        assert sim.issuer.web_identity_seen == ["projected-service-account-token"] * 2
        assert accepted_by_trtc(server, sim, ours.credentials) in {"Idle", "InProgress"}

    def test_the_profile_and_the_environment_are_read_as_the_sdk_reads_them(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        profile = tmp_path / ".tencentcloud" / "credentials"
        profile.parent.mkdir()
        profile.write_text("[default]\nsecret_id = AKIDprofile\nsecret_key = profile-key \n")
        monkeypatch.setenv("HOME", str(tmp_path))
        sdk = credential.ProfileCredential().get_credential()
        ours = fetch(ProfileSource("default", default_paths()))
        assert ours.credentials == Credentials(sdk.secret_id, sdk.secret_key)

        monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDenvironment")
        monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "environment-key")
        monkeypatch.delenv("TENCENTCLOUD_SESSION_TOKEN", raising=False)
        sdk_env = credential.EnvironmentVariableCredential().get_credential()
        assert fetch(EnvSource()).credentials == Credentials(sdk_env.secret_id, sdk_env.secret_key)
