"""Every credentials source (docs/trtc-api.md) against the simulator's STS and metadata
service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.credentials import CredentialsError, NotPresent, new_source
from monitor.credentials.cvm_role import CvmRoleSource
from monitor.credentials.env import EnvSource
from monitor.credentials.oidc import OidcSource
from monitor.credentials.profile import ProfileSource, read_profile
from monitor.credentials.sts import RoleSession, Sts, assume_role
from monitor.models import Outcome
from monitor.secrets import Credentials
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, FaultKind, Simulator
from monitor.trtc.client import Endpoint
from tests.credentials.credentials_support import (
    BASE,
    OTHER_ROLE,
    ROLE_ARN,
    WEB_TOKEN,
    account,
    describe_with,
    tke_env,
    write_profile,
)

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
        source = OidcSource(Sts(Endpoint.parse(sim.url)), "trtc-monitor", 7200, env)
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
        source = OidcSource(Sts(Endpoint.parse("http://127.0.0.1:9")), "x1", 900, env)
        with pytest.raises(NotPresent, match="TKE_ROLE_ARN not set"):
            await source.fetch(session)

    async def test_a_rejected_web_identity_token_is_an_error_with_the_code(
        self, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        sim.issuer.web_identity_tokens = {"only-this-token"}
        source = OidcSource(Sts(Endpoint.parse(sim.url)), "trtc-monitor", 900, tke_env(tmp_path))
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
        sts = Sts(Endpoint.parse(sim.url))
        role = RoleSession(OTHER_ROLE, "trtc-monitor", 3600)
        issued = await assume_role(session, sts, role, base=BASE, source="static+role")
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
            await assume_role(session, sts, role, base=wrong, source="static+role")

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
        endpoint = Endpoint.parse(sim.url)
        role = RoleSession(OTHER_ROLE, "trtc-monitor", 900)
        kwargs: dict[str, Any] = {"base": BASE, "source": "static+role"}
        with pytest.raises(CredentialsError, match="STS AssumeRole failed: InternalError"):
            await assume_role(session, Sts(endpoint), role, **kwargs)
        sim.faults.add(Fault(FaultKind.TIMEOUT, actions=sts, count=1, hold=5))
        with pytest.raises(CredentialsError, match=r"timed out after 0\.3s"):
            await assume_role(session, Sts(endpoint, timeout=0.3), role, **kwargs)
        assert (await assume_role(session, Sts(endpoint), role, **kwargs)).source == "static+role"
