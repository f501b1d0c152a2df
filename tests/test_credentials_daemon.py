"""The daemon with temporary credentials from the simulator's STS (an assumed role).

Two end-to-end runs, each with its own simulator, daemon, store and ports:

* 200 tasks polled for 90 s with 20-second credentials while every STS answer takes 2 s: the
  credentials rotate again and again, no poll waits for STS, nothing is refused;
* STS failing: the old credentials stay in use until they expire, the expiring alert fires
  before that, polls then fail as ``auth`` (no exit alert), and all recovers with STS.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from monitor.alerts.kinds import MONITOR_CREDENTIALS_EXPIRING, TASK_EXITED
from monitor.credentials import CODE_UNAVAILABLE
from monitor.log import configure_logging, set_secrets
from monitor.models import Status
from monitor.simulator import Fault, FaultKind, Life, Simulator
from monitor.simulator.sts import IssuedCredential
from tests.conftest import DaemonFactory, RunningDaemon

APP = 1400000001
ROLE_ARN = "qcs::cam::uin/100000000001:roleName/trtc-monitor"
STS_ONLY = frozenset({"AssumeRole"})


def config_text(sim_url: str, db: Path, *, interval: str, rate_limit: int, before: str) -> str:
    return f"""
server:
  listen: "127.0.0.1:0"
  api_token_env: TEST_API_TOKEN
storage:
  path: {db}
accounts:
  default:
    secret_id_env: TEST_SECRET_ID
    secret_key_env: TEST_SECRET_KEY
    endpoint: "{sim_url}"
    rate_limit: {rate_limit}
    role_arn: "{ROLE_ARN}"
    sts_endpoint: "{sim_url}"
polling:
  interval: {interval}
  jitter: 10%
  timeout: 4s
alerts:
  credentials: {{enabled: true, severity: warning, before: {before}}}
logging:
  format: json
  level: info
"""


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("json", "info", (), stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    set_secrets(())


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


async def register(running: RunningDaemon, sim: Simulator, count: int) -> list[str]:
    ids = [f"cred-{i:03d}" for i in range(count)]
    for task_id in ids:
        sim.add_task(APP, task_id, Life(idle=0.5, in_progress=None))
    for task_id in ids:
        async with await running.register(APP, task_id) as answer:
            assert answer.status == 201, await answer.text()
    return ids


async def exposed_text(running: RunningDaemon) -> str:
    """Everything the daemon shows: metrics, tasks, one task, alerts."""
    out = []
    for path in (
        "/metrics",
        "/api/v1/tasks?limit=1000",
        f"/api/v1/tasks/{APP}/cred-000",
        "/api/v1/alerts",
    ):
        async with running.session.get(running.url + path) as answer:
            assert answer.status == 200, path
            out.append(await answer.text())
    return "\n".join(out)


def assert_no_secret_in(text: str, issued: list[IssuedCredential]) -> None:
    assert issued
    for cred in issued:
        assert cred.secret_key not in text
        assert cred.token not in text


def refresh_counts(running: RunningDaemon, outcome: str) -> float:
    value = running.daemon.metrics.registry.get_sample_value(
        "trtc_monitor_credentials_refresh_total",
        {"account": "default", "source": "static+role", "outcome": outcome},
    )
    return value or 0.0


def firing_names(running: RunningDaemon) -> set[str]:
    return {record.alertname for record in running.daemon.alerts.firing()}


@pytest.mark.timeout(300)
async def test_200_tasks_poll_through_rotations_while_sts_is_slow(
    make_daemon: DaemonFactory, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    sim = Simulator(seed=11, credential_lifetime=20, rate_limit=200)
    sim.faults.add(Fault(FaultKind.LATENCY, latency=2.0, actions=STS_ONLY))
    await sim.start()
    try:
        running = await make_daemon(
            text=config_text(sim.url, tmp_path / "m.db", interval="5s", rate_limit=100, before="5s")
        )
        await register(running, sim, 200)
        await asyncio.sleep(90)
        exposed = await exposed_text(running)
        tasks = running.daemon.registry.tasks()
        firing = firing_names(running)
        await running.stop()
    finally:
        await sim.stop()

    issued = [c for c in sim.issuer.history if c.kind == "AssumeRole"]
    describes = list(sim.arrivals.select("DescribeCloudRecording"))
    print(f"credentials issued: {len(issued)}; polls: {len(describes)}")  # shown with -rP
    # the first set, then at least four rotations
    assert len(issued) >= 5
    assert refresh_counts(running, "success") == len(issued)
    assert refresh_counts(running, "failure") == 0

    codes = {a.code for a in describes}
    assert not any(code.startswith("AuthFailure") for code in codes), codes
    assert codes <= {""}, codes
    assert len(tasks) == 200
    for task in tasks:
        assert task.status is Status.IN_PROGRESS
        assert task.consecutive_errors == 0
        assert task.last_error_code is None
    assert firing == set()

    # Every STS call was held 2 s. Polls went on meanwhile, signed with the credentials
    # issued before: none of them waited for the refresh.
    for previous, rotation in itertools.pairwise(issued):
        assert rotation.answered_mono - rotation.requested_mono >= 2.0
        during = [a for a in describes if rotation.requested_mono < a.mono < rotation.answered_mono]
        assert during, f"no poll while {rotation.secret_id} was being issued"
        assert {a.secret_id for a in during} == {previous.secret_id}

    assert_no_secret_in(exposed, issued)
    assert_no_secret_in(captured_logs.getvalue(), issued)
    assert "credentials_refreshed" in captured_logs.getvalue()


@pytest.mark.timeout(180)
async def test_sts_failing_keeps_old_credentials_alerts_then_fails_polls_as_auth(
    make_daemon: DaemonFactory, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    sim = Simulator(seed=12, credential_lifetime=12)
    await sim.start()
    try:
        running = await make_daemon(
            text=config_text(sim.url, tmp_path / "m.db", interval="1s", rate_limit=20, before="10s")
        )
        daemon = running.daemon
        provider = daemon.credentials.providers["default"]
        first = provider.current()
        first_expiry = provider.expires_at
        assert first is not None
        assert first_expiry is not None
        sts_down = sim.faults.add(Fault(FaultKind.INTERNAL_ERROR, actions=STS_ONLY))
        ids = await register(running, sim, 5)

        # The refresh fails; the alert comes while the credentials are still valid.
        await wait_until(
            lambda: MONITOR_CREDENTIALS_EXPIRING in firing_names(running),
            timeout=20,
            what="RecordingMonitorCredentialsExpiring",
        )
        fired_at = time.time()
        assert fired_at < first_expiry
        assert provider.failing
        assert provider.current() == first
        (alert,) = [
            a for a in daemon.alerts.firing() if a.alertname == MONITOR_CREDENTIALS_EXPIRING
        ]
        assert alert.labels == {
            "alertname": MONITOR_CREDENTIALS_EXPIRING,
            "severity": "warning",
            "account": "default",
        }
        assert "InternalError" in alert.annotations["description"]

        # After expiry every poll fails as auth, locally: nothing expired is sent.
        # (task records are replaced on every change: read them afresh each time)
        await wait_until(
            lambda: all(
                t.consecutive_errors >= 2 and t.last_error_code == CODE_UNAVAILABLE
                for t in daemon.registry.tasks()
            ),
            timeout=30,
            what="polls failing as auth",
        )
        assert time.time() >= first_expiry - 1.0
        assert len(daemon.registry) == 5
        for task in daemon.registry.tasks():
            # polled with the old credentials after the refresh had failed
            assert task.last_success_at is not None
            assert task.last_success_at > fired_at - 1.0
            assert task.status is Status.IN_PROGRESS
        auth_failures = daemon.metrics.registry.get_sample_value(
            "trtc_monitor_api_requests_total",
            {
                "account": "default",
                "region": "ap-guangzhou",
                "outcome": "auth",
                "code": CODE_UNAVAILABLE,
            },
        )
        assert auth_failures is not None
        assert auth_failures >= 10
        assert TASK_EXITED not in firing_names(running)
        refused = [
            a.code
            for a in sim.arrivals.select("DescribeCloudRecording")
            if a.code.startswith("AuthFailure")
        ]
        assert refused == []

        # STS is back: a refresh succeeds, polls succeed, the alert resolves.
        sim.faults.remove(sts_down)
        await wait_until(
            lambda: provider.current() is not None and not provider.failing,
            timeout=30,
            what="a successful refresh",
        )
        assert provider.expires_at is not None
        assert provider.expires_at > first_expiry
        await wait_until(
            lambda: all(t.consecutive_errors == 0 for t in daemon.registry.tasks()),
            timeout=15,
            what="polls succeeding again",
        )
        await wait_until(
            lambda: MONITOR_CREDENTIALS_EXPIRING not in firing_names(running),
            timeout=15,
            what="the expiring alert to resolve",
        )
        assert refresh_counts(running, "failure") >= 1
        assert TASK_EXITED not in firing_names(running)
        exposed = await exposed_text(running)
        assert len(ids) == 5
    finally:
        await sim.stop()
    issued = [c for c in sim.issuer.history if c.kind == "AssumeRole"]
    assert len(issued) >= 2
    assert_no_secret_in(exposed, issued)
    assert_no_secret_in(captured_logs.getvalue(), issued)
    assert "credentials_refresh_failed" in captured_logs.getvalue()


async def test_a_reload_keeps_unchanged_providers_and_replaces_changed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY

    monkeypatch.setenv("TEST_SECRET_ID", DEFAULT_SECRET_ID)
    monkeypatch.setenv("TEST_SECRET_KEY", DEFAULT_SECRET_KEY)
    monkeypatch.setenv("TEST_API_TOKEN", "t" * 24)
    sim = Simulator(seed=13, credential_lifetime=600, metadata_role="node-role")
    await sim.start()
    path = tmp_path / "m.yaml"
    text = config_text(sim.url, tmp_path / "m.db", interval="5s", rate_limit=20, before="1m")
    node = f'  node: {{credentials: cvm_role, metadata_endpoint: "{sim.url}"}}\n'
    path.write_text(text.replace("polling:", node + "polling:"))
    daemon = Daemon(load_config(path), path)
    await daemon.start()
    try:
        providers = daemon.credentials.providers
        default = providers["default"]
        node_provider = providers["node"]
        assert (default.source, node_provider.source) == ("static+role", "cvm_role")
        gauge = daemon.metrics.registry.get_sample_value
        assert (
            gauge(
                "trtc_monitor_credentials_expiry_timestamp_seconds",
                {"account": "node", "source": "cvm_role"},
            )
            == node_provider.expires_at
        )

        assert (await daemon.reload()).ok
        providers = daemon.credentials.providers
        assert providers["default"] is default  # nothing changed
        assert providers["node"] is node_provider

        # a new session name for the role, and the node account gone
        path.write_text(text.replace("role_arn:", "role_session_name: renamed\n    role_arn:"))
        assert (await daemon.reload()).ok
        renamed = daemon.credentials.providers["default"]
        assert renamed is not default
        assert renamed.current() is not None
        assert sim.issuer.history[-1].session_name == "renamed"
        assert renamed.running
        assert not default.running  # replaced: stopped
        assert daemon.budget.accounts["default"].credentials is renamed
        assert "node" not in daemon.credentials.providers
        assert "node" not in daemon.budget.accounts
        assert not node_provider.running
        assert (
            gauge(
                "trtc_monitor_credentials_expiry_timestamp_seconds",
                {"account": "node", "source": "cvm_role"},
            )
            is None
        )
    finally:
        await daemon.stop()
        await sim.stop()
