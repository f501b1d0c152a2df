"""The ``credentials`` command: where each account's credentials come from, never what they
are."""

from __future__ import annotations

import asyncio
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import aiohttp
import pytest

from monitor.cli import main
from monitor.credentials import CredentialsError, resolve_once
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
from tests.credentials.credentials_support import OTHER_ROLE, WEB_TOKEN, account, tke_env


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
