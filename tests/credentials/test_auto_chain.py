"""The auto chain of credentials sources (docs/trtc-api.md): the order it tries them in."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from monitor.credentials import CredentialsError, NoCredentials, NotPresent, new_source
from monitor.credentials.chain import ChainSource
from monitor.secrets import Credentials
from monitor.simulator import Simulator
from tests.credentials.credentials_support import account, tke_env, write_profile

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
