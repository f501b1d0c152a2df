"""The standalone simulator: serve() on a port until cancelled."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, serve
from tests.simulator.helpers import Client, eventually


class TestServe:
    async def test_serve_prints_where_it_listens_and_the_demo_credentials(
        self, session: aiohttp.ClientSession
    ) -> None:
        out = io.StringIO()
        task = asyncio.create_task(serve("127.0.0.1:0", None, out=out))

        async def printed() -> bool:
            await asyncio.sleep(0)
            return "accepts SecretId" in out.getvalue()

        await eventually(printed)
        text = out.getvalue()
        url = text.split("listening on ", 1)[1].split()[0]
        assert f"SecretId {DEFAULT_SECRET_ID}, SecretKey {DEFAULT_SECRET_KEY}" in text
        answer = await Client(session, url).describe("t")
        assert answer.code == "FailedOperation.TaskNotExist"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            await Client(session, url).describe("t")

    async def test_serve_never_prints_a_scenario_secret(self, tmp_path: Path) -> None:
        path = tmp_path / "s.yaml"
        path.write_text(
            yaml.safe_dump(
                {"credentials": [{"secret_id": "AKIDMINE", "secret_key": "mine-secret"}]}
            )
        )
        out = io.StringIO()
        task = asyncio.create_task(serve("127.0.0.1:0", path, out=out))

        async def printed() -> bool:
            await asyncio.sleep(0)
            return "accepts SecretId" in out.getvalue()

        await eventually(printed)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert "AKIDMINE" in out.getvalue()
        assert "mine-secret" not in out.getvalue()

    async def test_a_bad_listen_address_is_refused(self) -> None:
        with pytest.raises(ValueError, match="listen"):
            await serve("localhost", None)

    def test_importing_the_package_starts_nothing(self) -> None:
        code = (
            "import asyncio, threading, monitor.simulator; "
            "assert threading.active_count() == 1; "
            "print('ok')"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.stdout.strip() == "ok", result.stderr
