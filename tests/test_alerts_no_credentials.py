"""``RecordingMonitorNoCredentials``: with no credentials anywhere the monitor says so, naming
the sources tried, instead of claiming that Tencent Cloud rejected credentials it never got."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.alerts.conditions import (
    AccountHealth,
    auth_firing,
    no_credentials_firing,
    observe_outcome,
)
from monitor.alerts.kinds import MONITOR_AUTH_FAILURE, MONITOR_NO_CREDENTIALS
from monitor.alerts.texts import auth_annotations
from monitor.config import parse_config
from monitor.credentials import (
    CODE_NO_CREDENTIALS,
    CODE_UNAVAILABLE,
    ChainSource,
    CredentialsError,
    Issued,
    NotPresent,
    RefreshingProvider,
    credentials_for_call,
)
from monitor.credentials.env import EnvSource
from monitor.models import Outcome
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
from monitor.trtc.client import CallResult
from tests.conftest import API_TOKEN, DaemonFactory
from tests.support import free_port

APP = 1400000001
TKE = ("TKE_REGION", "TKE_PROVIDER_ID", "TKE_WEB_IDENTITY_TOKEN_FILE", "TKE_ROLE_ARN")


class TestCondition:
    def test_no_credentials_is_not_a_rejection(self) -> None:
        health = AccountHealth()
        observe_outcome(health, Outcome.AUTH, 1.0, CODE_NO_CREDENTIALS, "auto: tried env (x)")
        assert no_credentials_firing(health) is True
        assert auth_firing(health) is False
        assert health.no_credentials_detail == "auto: tried env (x)"
        # Credentials appear, and Tencent Cloud rejects them: the other alert, not both.
        observe_outcome(health, Outcome.AUTH, 2.0, "AuthFailure.SecretIdNotFound")
        assert auth_firing(health) is True
        assert no_credentials_firing(health) is False
        observe_outcome(health, Outcome.OK, 3.0)
        assert (auth_firing(health), no_credentials_firing(health)) == (False, False)

    def test_a_source_that_fails_is_not_called_a_rejection_either(self) -> None:
        health = AccountHealth()
        observe_outcome(health, Outcome.AUTH, 1.0, CODE_UNAVAILABLE)
        said = auth_annotations("a", health)
        assert "rejects" not in said["summary"]
        assert "cannot be obtained" in said["summary"]


class _Failing:
    name = "oidc"

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        raise CredentialsError("oidc", "STS answered InternalError")


class TestProvider:
    async def test_an_empty_chain_answers_not_found_naming_each_source(self) -> None:
        chain = ChainSource([EnvSource({}), _Absent("profile", "no file at /nowhere")])
        provider = RefreshingProvider("a", chain, wait_timeout=5)
        async with aiohttp.ClientSession() as session:
            await provider.start(session)
            try:
                result = await credentials_for_call(provider)
            finally:
                await provider.stop()
        assert isinstance(result, CallResult)
        assert result.outcome is Outcome.AUTH
        assert result.code == CODE_NO_CREDENTIALS
        assert "env (TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY not set)" in result.message
        assert "profile (no file at /nowhere)" in result.message

    async def test_a_present_source_that_fails_stays_unavailable(self) -> None:
        provider = RefreshingProvider("a", _Failing(), wait_timeout=5)
        async with aiohttp.ClientSession() as session:
            await provider.start(session)
            try:
                result = await credentials_for_call(provider)
            finally:
                await provider.stop()
        assert isinstance(result, CallResult)
        assert result.code == CODE_UNAVAILABLE


class _Absent:
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        raise NotPresent(self.name, self._reason)


def firing(daemon: Any) -> dict[str, Any]:
    return {record.alertname: record for record in daemon.alerts.firing()}


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_a_daemon_without_credentials_says_so_and_recovers_when_they_come(
    simulator: Simulator,
    make_daemon: DaemonFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Nothing anywhere: no variables, no profile (a fresh HOME), no TKE identity, and the
    # CVM metadata service a closed loopback port (never the real host).
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", *TKE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    metadata = f"http://127.0.0.1:{free_port()}"
    text = f"""
server:
  listen: "127.0.0.1:0"
  api_token_env: TEST_API_TOKEN
storage:
  path: {tmp_path / "m.db"}
accounts:
  default:
    endpoint: "{simulator.url}"
    metadata_endpoint: "{metadata}"
polling: {{interval: 1s, jitter: 0%, timeout: 2s}}
"""
    parse_config(text)  # the file itself is fine
    running = await make_daemon(text=text)
    daemon = running.daemon
    task_id = simulator.add_task(APP)
    answer = await running.session.post(
        f"{running.url}/api/v1/tasks",
        json={"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status == 201
    await wait_until(lambda: MONITOR_NO_CREDENTIALS in firing(daemon), 30, "NoCredentials")
    record = firing(daemon)[MONITOR_NO_CREDENTIALS]
    assert record.labels == {
        "alertname": MONITOR_NO_CREDENTIALS,
        "severity": "critical",
        "account": "default",
    }
    description = record.annotations["description"]
    for source in ("env (", "oidc (", "profile (", "cvm_role ("):
        assert source in description, source
    assert "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY not set" in description
    assert metadata in description
    assert "Nothing was sent" in description
    assert MONITOR_AUTH_FAILURE not in firing(daemon)
    sent = daemon.metrics.registry.get_sample_value(
        "trtc_monitor_api_requests_total",
        {
            "account": "default",
            "region": "ap-guangzhou",
            "outcome": "auth",
            "code": CODE_NO_CREDENTIALS,
        },
    )
    assert sent is not None
    assert sent >= 1
    assert list(simulator.arrivals.select("DescribeCloudRecording")) == []

    # Credentials come: the env source reads the variables at its next attempt.
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY)
    await wait_until(lambda: MONITOR_NO_CREDENTIALS not in firing(daemon), 60, "resolution")
    assert MONITOR_AUTH_FAILURE not in firing(daemon)
