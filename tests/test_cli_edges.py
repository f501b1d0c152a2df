"""What a newcomer meets in the first hour with the command line: check-config agrees with run,
store copy refuses a source that is not there, a closed pipe ends output quietly, one label
syntax, --version, and printed commands that work as printed. Each command in its own
process, as a user types it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import __version__
from monitor.config import check_config
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
from tests.conftest import API_TOKEN, DaemonFactory
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
APP = 1400000001
# Variables the tests choose: never inherited from the machine that runs them.
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("TENCENTCLOUD_", "TKE_", "TRTC_", "EDGE_"))
}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**CLEAN, **(env or {})},
        cwd=cwd,
        check=False,
    )


async def acli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args, env=env)


def write(tmp_path: Path, body: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'server: {{listen: "127.0.0.1:0"}}\nstorage: {{path: {tmp_path / "state.db"}}}\n' + body,
        encoding="utf-8",
    )
    return path


# ------------------------------------------------------------------------- one validation path


REFUSED = {
    "unset secret_id_env": "accounts:\n  default:\n    secret_id_env: EDGE_ID\n"
    "    secret_key_env: EDGE_KEY\n",
    "unset callback key": "callbacks:\n  key_env: EDGE_CALLBACK_KEY\n",
    "missing api token file": "server_extra: x\n",
    "robot URL that is no URL": "alerts:\n  receivers:\n    - {type: wecom, url_env: EDGE_ROBOT}\n",
    "storage path that is a directory": "metrics: {per_task: true}\n",
    "malformed webhook headers": "alerts:\n  receivers:\n"
    "    - {type: webhook, url: 'https://h.example', headers_file: HEADERS}\n",
    "web configuration file with a typo": "",
}


class TestOneValidationPath:
    @pytest.mark.parametrize("case", sorted(REFUSED))
    def test_check_config_fails_every_file_run_refuses(self, case: str, tmp_path: Path) -> None:
        body = REFUSED[case]
        headers = tmp_path / "headers"
        headers.write_text("Authorization Bearer s3cr3t-h3ader\n", encoding="utf-8")
        body = body.replace("HEADERS", str(headers))
        if case == "missing api token file":
            path = tmp_path / "m.yaml"
            path.write_text(
                f'server: {{listen: "127.0.0.1:0", api_token_file: {tmp_path / "nope"}}}\n'
                f"storage: {{path: {tmp_path / 'state.db'}}}\n",
                encoding="utf-8",
            )
        elif case == "web configuration file with a typo":
            web = tmp_path / "web.yml"
            web.write_text("tls_server_confg: {}\n", encoding="utf-8")
            path = tmp_path / "m.yaml"
            path.write_text(
                f'server: {{listen: "127.0.0.1:0", web_config_file: {web}}}\n'
                f"storage: {{path: {tmp_path / 'state.db'}}}\n",
                encoding="utf-8",
            )
        else:
            path = write(tmp_path, body)
        if case == "storage path that is a directory":
            (tmp_path / "state.db").mkdir()
        env = {"EDGE_ROBOT": "not a url", "EDGE_ID": "AKIDx"} if "robot" in case else {}
        env.update(TENCENTCLOUD_SECRET_ID="AKIDx", TENCENTCLOUD_SECRET_KEY="k")
        if case == "unset secret_id_env":
            env.pop("EDGE_ID", None)

        run = cli("run", "-c", str(path), env=env)
        assert run.returncode == 2, run.stdout + run.stderr
        if case != "storage path that is a directory":
            assert not (tmp_path / "state.db").exists()  # refused before anything was opened
        checked = cli("check-config", "-c", str(path), env=env)
        assert checked.returncode == 1, checked.stdout + checked.stderr
        # Every error run names, check-config names too.
        errors = [
            line.removeprefix("error: ")
            for line in run.stderr.splitlines()
            if line.startswith("error: ")
        ]
        assert errors
        for line in errors:
            assert line in checked.stderr
        assert "Traceback" not in run.stderr + checked.stderr
        assert "s3cr3t" not in run.stderr + checked.stderr

    def test_warnings_stay_warnings(self, tmp_path: Path) -> None:
        path = write(tmp_path, "accounts:\n  default:\n    secret_id: AKIDx\n    secret_key: k\n")
        checked = cli("check-config", "-c", str(path))
        assert checked.returncode == 0, checked.stderr
        assert "warning:" in checked.stdout
        assert "literal secret" in checked.stdout

    def test_syntax_only_checks_the_file_alone(self, tmp_path: Path) -> None:
        path = write(tmp_path, REFUSED["unset secret_id_env"])
        checked = cli("check-config", "--syntax-only", "-c", str(path))
        assert checked.returncode == 0, checked.stderr
        assert "warning:" in checked.stdout
        assert "EDGE_ID is not set" in checked.stdout
        broken = cli("check-config", "--syntax-only", "-c", str(write(tmp_path, "pollng: {}\n")))
        assert broken.returncode == 1


class TestNoCredentialsWarning:
    def test_a_named_source_that_is_absent_is_a_warning(self, tmp_path: Path) -> None:
        path = write(tmp_path, "accounts:\n  a: {credentials: env}\n")
        code, text = check_config(path, environ={}, home=tmp_path)
        assert code == 0, text
        warnings = [line for line in text.splitlines() if line.startswith("warning:")]
        assert warnings == [
            f"warning: {path}:4: accounts.a: no credentials found (tried env "
            "(TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY not set)): every poll of this "
            "account will fail (RecordingMonitorNoCredentials)"
        ]

    def test_the_auto_chain_names_every_source_tried_and_the_cvm_role_left(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path, "accounts:\n  a: {metadata_endpoint: 'http://127.0.0.1:9'}\n")
        code, text = check_config(path, environ={}, home=tmp_path)
        assert code == 0, text
        (warning,) = [line for line in text.splitlines() if line.startswith("warning:")]
        assert "accounts.a: no credentials on this machine" in warning
        assert "env (TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY not set)" in warning
        assert "oidc (TKE_REGION, TKE_PROVIDER_ID" in warning
        assert f"profile (no file at {tmp_path}/.tencentcloud/credentials" in warning
        assert "CVM role remains (metadata http://127.0.0.1:9, not asked" in warning

    def test_any_present_source_means_no_warning(self, tmp_path: Path) -> None:
        path = write(tmp_path, "accounts:\n  a: {}\n")
        environ = {"TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "k"}
        code, text = check_config(path, environ=environ, home=tmp_path)
        assert code == 0
        assert "no credentials" not in text
        profile = tmp_path / ".tencentcloud" / "credentials"
        profile.parent.mkdir()
        profile.write_text("[default]\nsecret_id = AKIDx\nsecret_key = k\n", encoding="utf-8")
        code, text = check_config(path, environ={}, home=tmp_path)
        assert code == 0
        assert "no credentials" not in text


# ------------------------------------------------------------------------------- store copy


class TestStoreCopySource:
    def test_a_missing_sqlite_source_is_refused_and_nothing_is_created(
        self, tmp_path: Path
    ) -> None:
        source, target = tmp_path / "missing.db", tmp_path / "target.db"
        result = cli("store", "copy", "--from", f"sqlite:{source}", "--to", f"sqlite:{target}")
        assert result.returncode == 2
        assert result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ")
        assert str(source) in line
        assert "no such file" in line
        assert sorted(p.name for p in tmp_path.iterdir()) == []

    def test_a_directory_is_no_source(self, tmp_path: Path) -> None:
        (tmp_path / "dir.db").mkdir()
        result = cli(
            "store", "copy", "--from", f"sqlite:{tmp_path / 'dir.db'}",
            "--to", f"sqlite:{tmp_path / 't.db'}",
        )  # fmt: skip
        assert result.returncode == 2
        assert "is not a file" in result.stderr
        assert not (tmp_path / "t.db").exists()

    def test_a_redis_source_that_does_not_answer_is_refused(self, tmp_path: Path) -> None:
        target = tmp_path / "target.db"
        result = cli(
            "store", "copy", "--from", f"redis://:pa55-Wq7z@127.0.0.1:{free_port()}/0",
            "--to", f"sqlite:{target}",
        )  # fmt: skip
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: store copy: source redis")
        assert "cannot open" in line
        assert "pa55-Wq7z" not in line
        assert not target.exists()
        assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ closed pipes


def closed_pipe_run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run with stdout a pipe whose reader is already gone (``| head -1`` after its line)."""
    read, write_end = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "monitor", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**CLEAN, **(env or {})},
            cwd=ROOT,
            check=False,
        )
    finally:
        os.close(write_end)
    return result.returncode, result.stderr


class TestClosedPipe:
    def test_check_config(self, tmp_path: Path) -> None:
        path = write(tmp_path, "accounts:\n  default:\n    secret_id: AKIDx\n    secret_key: k\n")
        code, err = closed_pipe_run("check-config", "-c", str(path))
        assert (code, err) == (0, "")

    @pytest.mark.parametrize("args", [("--help",), ("--version",), ("version",)])
    def test_help_and_version(self, args: tuple[str, ...]) -> None:
        assert closed_pipe_run(*args) == (0, "")

    async def test_tasks_list_show_and_describe(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP)
        assert (await running.register(APP, task_id)).status == 201
        config = tmp_path / "c.yaml"
        config.write_text(
            f'accounts:\n  default:\n    endpoint: "{simulator.url}"\n', encoding="utf-8"
        )
        env = {
            "TENCENTCLOUD_SECRET_ID": DEFAULT_SECRET_ID,
            "TENCENTCLOUD_SECRET_KEY": DEFAULT_SECRET_KEY,
        }
        for args in (
            ("tasks", "--url", running.url, "list"),
            ("tasks", "--url", running.url, "list", "--json"),
            ("tasks", "--url", running.url, "show", "--sdk-app-id", str(APP), "--task-id", task_id),
            (
                "describe", "-c", str(config), "--sdk-app-id", str(APP), "--task-id", task_id,
                "--region", "ap-guangzhou",
            ),
        ):  # fmt: skip
            code, err = await asyncio.to_thread(closed_pipe_run, *args, env=env)
            assert (code, err) == (0, ""), args


# ------------------------------------------------------------------------------- labels


class TestLabels:
    async def test_list_filters_with_the_same_name_value_syntax_as_add(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        url = ("--url", running.url)
        env = {"TRTC_MONITOR_API_TOKEN": API_TOKEN}
        first, second, third = (simulator.add_task(APP) for _ in range(3))
        for task_id, label in ((first, "room=r1"), (second, "room=r2"), (third, "note=a&b=c d")):
            added = await acli(
                "tasks", *url, "add", "--sdk-app-id", str(APP), "--task-id", task_id,
                "--region", "ap-guangzhou", "--label", label, env=env,
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
        listed = await acli("tasks", *url, "list", "--label", "room=r1")
        assert listed.returncode == 0, listed.stderr
        assert first[:36] in listed.stdout
        assert second[:36] not in listed.stdout
        # A value holding "=", "&" and a space reaches the API as it was typed.
        noted = await acli("tasks", *url, "list", "--label", "note=a&b=c d")
        assert noted.returncode == 0, noted.stderr
        assert third[:36] in noted.stdout
        assert first[:36] not in noted.stdout

    @pytest.mark.parametrize("command", ["add", "list"])
    def test_any_other_syntax_is_one_usage_error_for_every_command(self, command: str) -> None:
        extra = ["--sdk-app-id", "1", "--task-id", "t", "--region", "ap-beijing"]
        args = ["tasks", "--url", f"http://127.0.0.1:{free_port()}", command]
        result = cli(*args, *(extra if command == "add" else []), "--label", "room:r1")
        assert result.returncode == 2
        assert result.stderr == "error: --label 'room:r1': use name=value (e.g. room=r1)\n"
        bad_name = cli(*args, *(extra if command == "add" else []), "--label", "9room=r1")
        assert bad_name.returncode == 2
        assert "must be letters, digits and _" in bad_name.stderr


# ------------------------------------------------------------------------------ --version


def test_version_flag() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"trtc-monitor {__version__}\n"


# ---------------------------------------------------------------- printed commands that work


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--port", "0", "--duration", "90s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=CLEAN,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.timeout(120)
def test_the_demos_try_command_works_in_a_fresh_shell(
    demo: subprocess.Popen[str], tmp_path: Path
) -> None:
    assert demo.stdout is not None
    deadline = time.monotonic() + 60
    command = ""
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        if m := re.match(r"\s+try\s+(.*)$", line):
            command = m.group(1)
            break
    assert command, "the demo printed no try: command"
    # A fresh shell: a minimal PATH (no virtualenv on it), another directory.
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=fresh,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, (command, result.stderr)
    assert result.stdout.startswith("SDKAPPID")
