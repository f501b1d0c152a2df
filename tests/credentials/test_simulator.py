"""The simulator's temporary credentials: accepted with their token until they expire."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from monitor.credentials import CredentialsError
from monitor.credentials.cvm_role import CvmRoleSource
from monitor.credentials.sts import RoleSession, Sts, assume_role
from monitor.models import Outcome
from monitor.secrets import Credentials
from monitor.simulator import Simulator, SimulatorControl
from monitor.trtc.client import Endpoint
from tests.credentials.credentials_support import BASE, ROLE_ARN, describe_with

# ---------------------------------------------------------------------------------------------
# the simulator's temporary credentials


class TestSimulatorCredentials:
    async def test_temporary_credentials_work_with_their_token_until_they_expire(
        self, session: aiohttp.ClientSession
    ) -> None:
        sim = Simulator(seed=3, credential_lifetime=2)
        await sim.start()
        try:
            sts = Sts(Endpoint.parse(sim.url))
            role = RoleSession(ROLE_ARN, "trtc-monitor", 7200)
            issued = await assume_role(session, sts, role, base=BASE, source="static+role")
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
                    session, sts, RoleSession(ROLE_ARN, "trtc-monitor", 900), base=creds, source="x"
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
