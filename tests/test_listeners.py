"""The listeners: bound before anything starts, the callback path on a port of its own, and
``X-Content-Type-Options: nosniff`` on every answer of both."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from monitor.models import TaskKey
from monitor.simulator import Simulator, sign
from monitor.simulator.callbacks import build_body
from tests.conftest import API_TOKEN, daemon_config_text
from tests.test_process import daemon_env
from tests.tls_support import served_daemon

APP = 1400000001
KEY = "cbKey0123456789abcdef"
PATH = "/callbacks/trtc"
# A static task: a daemon that got as far as polling would ask the simulator about it.
TASK = f"tasks:\n  - {{sdk_app_id: {APP}, task_id: static-1, region: ap-guangzhou}}\n"


def callbacks_extra(listen: str | None, web_config: Path | None = None) -> str:
    text = f"callbacks:\n  key_env: TEST_CALLBACK_KEY\n  path: {PATH}\n"
    if listen is not None:
        text += f'  listen: "{listen}"\n'
    if web_config is not None:
        text += f"  web_config_file: {web_config}\n"
    return text


def write_config(tmp: Path, endpoint: str, main: str, extra: str = "") -> Path:
    text = daemon_config_text(endpoint, tmp / "monitor.db", extra).replace(
        '"127.0.0.1:0"', f'"{main}"'
    )
    path = tmp / "monitor.yaml"
    path.write_text(text)
    return path


def signed_started(task_id: str) -> tuple[bytes, dict[str, str]]:
    now = time.time()
    raw = build_body(
        301,
        room_id="room-1",
        user_id="recorder_1",
        task_id=task_id,
        payload={},
        event_wall=now,
        callback_wall=now + 0.05,
    )
    headers = {"Content-Type": "application/json", "Sign": sign(KEY, raw), "SdkAppId": str(APP)}
    return raw, headers


def held_port() -> Iterator[tuple[socket.socket, int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def free_listen() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class TestBindFirst:
    @pytest.mark.parametrize("taken", ["main", "callbacks"])
    def test_a_taken_port_stops_the_start_before_the_store_is_opened(
        self, taken: str, tmp_path: Path, simulator: Simulator
    ) -> None:
        for _sock, port in held_port():
            address = f"127.0.0.1:{port}"
            main = address if taken == "main" else free_listen()
            other = address if taken == "callbacks" else free_listen()
            config = write_config(tmp_path, simulator.url, main, callbacks_extra(other) + TASK)
            env = {**daemon_env(), "TEST_CALLBACK_KEY": KEY}
            done = subprocess.run(
                [sys.executable, "-m", "monitor", "run", "-c", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert lines == [f"error: cannot listen on {address}: address already in use"]
            # Nothing was opened, polled or recorded.
            assert not (tmp_path / "monitor.db").exists()
            assert list(tmp_path.glob("monitor.db*")) == []
            assert len(simulator.arrivals) == 0

    def test_a_taken_port_leaves_an_existing_store_untouched(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        db = tmp_path / "monitor.db"
        # A real SQLite file (run refuses anything else before it even binds).
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE untouched (x)")
            conn.commit()
        content = db.read_bytes()
        before = db.stat().st_mtime_ns
        for _sock, port in held_port():
            config = write_config(tmp_path, simulator.url, f"127.0.0.1:{port}", TASK)
            done = subprocess.run(
                [sys.executable, "-m", "monitor", "run", "-c", str(config)],
                env=daemon_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 2
            assert f"127.0.0.1:{port}" in done.stderr
        assert db.read_bytes() == content
        assert db.stat().st_mtime_ns == before
        assert sorted(p.name for p in tmp_path.glob("monitor.db*")) == ["monitor.db"]
        assert len(simulator.arrivals) == 0

    def test_a_broken_web_config_file_stops_the_start_the_same_way(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        web = tmp_path / "web.yml"
        web.write_text("basic_auth_users:\n  bob: not-a-hash\n")
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0", TASK)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor",
                "run",
                "-c",
                str(config),
                "--web.config.file",
                str(web),
            ],
            env=daemon_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"error: {web}: basic_auth_users.bob: not a bcrypt hash")
        assert "not-a-hash" not in done.stderr
        assert list(tmp_path.glob("monitor.db*")) == []
        assert len(simulator.arrivals) == 0


@pytest.fixture
def callback_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    monkeypatch.setenv("TEST_API_TOKEN", API_TOKEN)
    for name, value in daemon_env().items():
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("callback_key")
class TestCallbackListener:
    async def test_only_the_callback_path_is_served_there_and_not_on_the_main_port(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        config = write_config(
            tmp_path, simulator.url, "127.0.0.1:0", callbacks_extra("127.0.0.1:0")
        )
        async with served_daemon(config) as served, aiohttp.ClientSession() as session:
            raw, headers = signed_started("task-apart")
            callback = served.callbacks
            async with session.post(callback, data=raw, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert r.headers["X-Content-Type-Options"] == "nosniff"
            task = served.daemon.registry.get(TaskKey(APP, "task-apart"))
            assert task is not None
            base = callback.removesuffix(PATH)
            for method, path in [
                ("GET", "/metrics"),
                ("GET", "/-/healthy"),
                ("GET", "/-/ready"),
                ("GET", "/"),
                ("GET", "/api/v1/tasks"),
                ("POST", "/-/reload"),
                ("GET", "/api/v1/openapi.json"),
            ]:
                async with session.request(method, base + path) as r:
                    assert r.status == 404, (method, path)
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
            # The main port serves everything else, and no longer the callback path.
            raw, headers = signed_started("task-main")
            async with session.post(served.main + PATH, data=raw, headers=headers) as r:
                assert r.status == 404
            assert served.daemon.registry.get(TaskKey(APP, "task-main")) is None
            async with session.get(served.main + "/-/healthy") as r:
                assert r.status == 200

    async def test_unset_the_main_port_serves_the_callback_path_as_before(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0", callbacks_extra(None))
        async with served_daemon(config) as served, aiohttp.ClientSession() as session:
            assert "callbacks" not in served.listeners.urls
            raw, headers = signed_started("task-here")
            async with session.post(served.main + PATH, data=raw, headers=headers) as r:
                assert r.status == 200
            assert served.daemon.registry.get(TaskKey(APP, "task-here")) is not None

    async def test_changing_callbacks_listen_takes_a_restart(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        config = write_config(
            tmp_path, simulator.url, "127.0.0.1:0", callbacks_extra("127.0.0.1:0")
        )
        async with served_daemon(config) as served:
            config.write_text(config.read_text().replace('listen: "127.0.0.1:0"\n', ""))
            result = await served.daemon.reload()
            assert result.ok, result.errors
            assert "callbacks.listen" in result.restart_required


@pytest.mark.usefixtures("callback_key")
class TestNosniff:
    async def test_every_answer_of_the_main_listener_says_nosniff(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        config = write_config(tmp_path, simulator.url, "127.0.0.1:0", callbacks_extra(None))
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        async with served_daemon(config) as served, aiohttp.ClientSession() as session:
            base = served.main
            raw, headers = signed_started("task-n")
            requests: list[tuple[str, str, dict[str, str], bytes | None, int]] = [
                ("POST", PATH, headers, raw, 200),
                ("POST", PATH, {"Sign": "wrong"}, raw, 401),
                ("GET", "/metrics", {}, None, 200),
                ("GET", "/metrics", {"Accept-Encoding": "gzip"}, None, 200),
                ("GET", "/-/healthy", {}, None, 200),
                ("GET", "/", {}, None, 200),
                ("GET", "/api/v1/tasks", {}, None, 200),
                ("GET", "/api/v1/tasks?status=nonsense", {}, None, 400),
                ("GET", "/api/v1/openapi.json", {}, None, 200),
                ("GET", "/api/v1/tasks/1/none", {}, None, 404),
                ("GET", "/no/such/path", {}, None, 404),
                ("PUT", "/api/v1/tasks", auth, None, 405),
                ("POST", "/api/v1/tasks", {}, b"{}", 401),
                ("POST", "/api/v1/tasks", {**auth, "Content-Type": "application/json"}, b"{", 400),
            ]
            for method, path, extra, body, status in requests:
                async with session.request(method, base + path, headers=extra, data=body) as r:
                    await r.read()
                    assert r.status == status, (method, path, await r.text())
                    assert r.headers.get("X-Content-Type-Options") == "nosniff", (method, path)
            body_json = json.dumps({"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou"})
            async with session.post(
                base + "/api/v1/tasks",
                data=body_json,
                headers={**auth, "Content-Type": "application/json"},
            ) as r:
                assert r.status == 201
                assert r.headers["X-Content-Type-Options"] == "nosniff"
