"""What the credentials tests share: the role names, the web identity token, an account
factory, the TKE environment, profile files and one DescribeCloudRecording call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from monitor.config import AccountConfig
from monitor.models import Outcome
from monitor.secrets import Credentials
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
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
