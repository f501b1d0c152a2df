"""The OCI image `make image` builds, unpacked and run here as its own user.

Podman cannot run containers on this machine, and none is needed: the test unpacks the image
with umoci and runs the image's entrypoint and command as the image's user, with the image's
environment and working directory, chrooted into the unpacked root filesystem. The simulator
runs from the same image (`trtc-monitor simulate`); loopback is shared with the host, where the
test talks to both.

The build takes the Debian root filesystem from build/cache (made by mmdebstrap on the first
run) and is reused by later sessions of the same commit. Building and running need root
(chroot, file ownership): without root the tests are skipped and say so; as root a missing tool
is a failure (`make test` installs mmdebstrap and umoci).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import monitor
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from tests.deploy_support import dockerfile
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "deploy" / "image" / "build.sh"
ARCHIVE = ROOT / "build" / f"trtc-recording-monitor-{monitor.__version__}.oci.tar"
BUILD_TIMEOUT = 1500  # the first build downloads Debian; later ones reuse build/cache
API_TOKEN = "image-test-token"

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT * 2 + 300)


def _require_build_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "building and running the image needs root (chroot and file ownership); "
            "run `sudo make test` or `sudo make image`"
        )
    missing = [t for t in ("mmdebstrap", "umoci", "chroot", "git") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make system-deps` (Debian packages)")


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _tree_is_clean() -> bool:
    """No uncommitted change to what goes into the image."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "monitor", "pyproject.toml", "deploy/image"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return status.strip() == ""


def build(build_dir: Path) -> Path:
    """Run deploy/image/build.sh with its output in build_dir (the Debian cache shared)."""
    cache = ROOT / "build" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    if build_dir != ROOT / "build" and not (build_dir / "cache").exists():
        (build_dir / "cache").symlink_to(cache)
    result = subprocess.run(
        [str(BUILD_SCRIPT)],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, "BUILD": str(build_dir)},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    archive = build_dir / ARCHIVE.name
    assert archive.is_file()
    return archive


@pytest.fixture(scope="session")
def archive() -> Path:
    """The image archive of this commit: the one in build/ when it is this commit's."""
    _require_build_tools()
    revision = ARCHIVE.with_name(ARCHIVE.name + ".revision")
    if (
        ARCHIVE.is_file()
        and revision.is_file()
        and revision.read_text().strip() == _head()
        and _tree_is_clean()
    ):
        return ARCHIVE
    return build(ROOT / "build")


@dataclass
class Image:
    layout: Path
    tag: str
    manifest: dict[str, Any]
    config: dict[str, Any]


def read_image(archive: Path, into: Path) -> Image:
    """Extract the OCI layout and read its one manifest and config."""
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    index = json.loads((into / "index.json").read_text())
    (entry,) = index["manifests"]

    def blob(digest: str) -> dict[str, Any]:
        algorithm, value = digest.split(":")
        path = into / "blobs" / algorithm / value
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == value
        loaded: dict[str, Any] = json.loads(data)
        return loaded

    manifest = blob(entry["digest"])
    return Image(
        layout=into,
        tag=entry["annotations"]["org.opencontainers.image.ref.name"],
        manifest=manifest,
        config=blob(manifest["config"]["digest"]),
    )


@pytest.fixture(scope="session")
def image(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    layout = tmp_path_factory.mktemp("oci") / "layout"
    yield read_image(archive, layout)
    shutil.rmtree(layout, ignore_errors=True)


@pytest.fixture(scope="session")
def bundle(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The image unpacked by umoci: a runtime bundle (config.json and rootfs)."""
    path = tmp_path_factory.mktemp("bundle") / "b"
    result = subprocess.run(
        ["umoci", "unpack", "--image", f"{image.layout}:{image.tag}", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Process:
    """A command of the image, run as the image's user in a chroot of its root filesystem."""

    def __init__(self, bundle: Path, args: list[str], log: Path) -> None:
        spec = json.loads((bundle / "config.json").read_text())["process"]
        user = spec["user"]
        env = dict(e.split("=", 1) for e in spec["env"])
        rootfs = bundle / "rootfs"
        self.log = log
        self._log_file = log.open("wb")
        # chroot(8) sets the user; sh (the image's) enters the working directory and finds the
        # entrypoint on the image's PATH, as a container runtime would.
        self.proc = subprocess.Popen(
            [
                "chroot",
                f"--userspec={user['uid']}:{user['gid']}",
                "--groups=",
                str(rootfs),
                "/bin/sh",
                "-c",
                'cd "$0" && exec "$@"',
                spec["cwd"],
                *args,
            ],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(what: str, check: Any, procs: list[Process], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                pytest.fail(f"{what}: a process exited {p.proc.returncode}: {p.log.read_text()}")
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    logs = "\n".join(p.log.read_text()[-2000:] for p in procs)
    pytest.fail(f"timed out waiting for {what} (last {last!r}):\n{logs}")


# ---------------------------------------------------------------------------------------------
# the image's metadata


class TestImageConfig:
    def test_the_image_runs_trtc_monitor_as_uid_10001_with_the_default_command(
        self, image: Image
    ) -> None:
        config = image.config["config"]
        assert config["User"] == "10001:10001"
        assert config["Entrypoint"] == ["trtc-monitor"]
        assert config["Cmd"] == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]
        assert config["WorkingDir"] == "/var/lib/trtc-monitor"
        assert set(config["Volumes"]) == {"/var/lib/trtc-monitor"}
        assert set(config["ExposedPorts"]) == {"9877/tcp"}
        assert image.config["os"] == "linux"

    def test_the_oci_labels_name_version_revision_source_and_licence(self, image: Image) -> None:
        labels = image.config["config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == monitor.__version__
        assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
        assert labels["org.opencontainers.image.source"].startswith("https://")
        assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"

    def test_the_dockerfile_agrees_with_the_image(self, image: Image) -> None:
        config = image.config["config"]
        instructions = {
            word: dockerfile(word)
            for word in ("USER", "ENTRYPOINT", "CMD", "WORKDIR", "VOLUME", "EXPOSE", "ENV", "RUN")
        }
        assert instructions["USER"][-1] == config["User"]
        assert json.loads(instructions["ENTRYPOINT"][-1]) == config["Entrypoint"]
        assert json.loads(instructions["CMD"][-1]) == config["Cmd"]
        assert instructions["WORKDIR"][-1] == config["WorkingDir"]
        assert json.loads(instructions["VOLUME"][-1]) == list(config["Volumes"])
        assert [f"{p}/tcp" for p in instructions["EXPOSE"]] == list(config["ExposedPorts"])
        image_env = dict(e.split("=", 1) for e in config["Env"])
        docker_env: dict[str, str] = {}
        for args in instructions["ENV"]:
            docker_env.update(dict(kv.split("=", 1) for kv in shlex.split(args)))
        for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "TRTC_MONITOR_CONFIG"):
            assert docker_env[name] == image_env[name], name
        venv = "/opt/trtc-monitor"
        assert image_env["PATH"].startswith(f"{venv}/bin:")
        assert docker_env["PATH"].startswith(f"{venv}/bin:")
        # The same wheel, installed the same way: a venv without pip, the package from the
        # wheels only, bytecode with hash-based invalidation.
        install = " ".join(instructions["RUN"])
        script = BUILD_SCRIPT.read_text(encoding="utf-8")
        for step in (
            "venv --without-pip",
            "install --no-index --find-links",
            "--no-compile",
            "compileall -q",
            "--invalidation-mode unchecked-hash",
        ):
            assert step in install, step
            assert step in script, step
        assert f"APP={venv}\n" in script


# ---------------------------------------------------------------------------------------------
# the unpacked image


class TestUnpackedImage:
    def test_the_user_owns_the_data_directory_and_nothing_else_is_writable_to_it(
        self, bundle: Path
    ) -> None:
        rootfs = bundle / "rootfs"
        data = (rootfs / "var" / "lib" / "trtc-monitor").stat()
        assert (data.st_uid, data.st_gid) == (10001, 10001)
        passwd = (rootfs / "etc" / "passwd").read_text()
        assert re.search(r"^trtc:x:10001:10001:", passwd, re.M)
        venv = rootfs / "opt" / "trtc-monitor"
        assert venv.stat().st_uid == 0
        # Made by the image's own python3 (Debian's), not by the build machine's.
        assert os.readlink(venv / "bin" / "python3") == "/usr/bin/python3"

    def test_the_entrypoint_and_command_serve_and_poll_the_simulator(
        self, bundle: Path, tmp_path: Path
    ) -> None:
        sim_port, port = free_port(), free_port()
        config_dir = bundle / "rootfs" / "etc" / "trtc-monitor"
        config_dir.joinpath("monitor.yaml").write_text(
            f"""
server:
  listen: "127.0.0.1:{port}"
  api_token: "{API_TOKEN}"
storage:
  path: /var/lib/trtc-monitor/trtc-monitor.db
accounts:
  default:
    secret_id: "{DEFAULT_SECRET_ID}"
    secret_key: "{DEFAULT_SECRET_KEY}"
    endpoint: "http://127.0.0.1:{sim_port}"
polling:
  interval: 1s
  jitter: 0%
  timeout: 2s
logging:
  format: json
  level: info
""",
            encoding="utf-8",
        )
        spec = json.loads((bundle / "config.json").read_text())["process"]
        assert spec["user"]["uid"] == 10001
        entry_and_cmd = spec["args"]
        assert entry_and_cmd == ["trtc-monitor", "run", "-c", "/etc/trtc-monitor/monitor.yaml"]

        simulator = Process(
            bundle,
            ["trtc-monitor", "simulate", "--listen", f"127.0.0.1:{sim_port}"],
            tmp_path / "sim.log",
        )
        daemon = Process(bundle, entry_and_cmd, tmp_path / "daemon.log")
        procs = [simulator, daemon]
        url, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
        try:
            wait_until("/-/healthy", lambda: get(f"{url}/-/healthy")[0] == 200, procs)
            status, metrics = get(f"{url}/metrics")
            assert status == 200
            assert "trtc_monitor_build_info{" in metrics
            assert f'version="{monitor.__version__}"' in metrics

            wait_until("the simulator", lambda: get(f"{sim}/-/sim/")[0] == 200, procs)
            status, made = post(f"{sim}/-/sim/tasks", {"sdk_app_id": 1400000001})
            assert status == 201, made
            task_id = made["task_id"]
            body = {"sdk_app_id": 1400000001, "task_id": task_id, "region": "ap-guangzhou"}
            status, answer = post(f"{url}/api/v1/tasks", body, token=API_TOKEN)
            assert status in (200, 201), answer

            def polled() -> bool:
                text = get(f"{url}/metrics")[1]
                pattern = (
                    r"^trtc_recording_task_last_success_timestamp_seconds\{[^}]*"
                    rf'task_id="{re.escape(task_id)}"[^}}]*\}} ([0-9.e+]+)$'
                )
                found = re.search(pattern, text, re.M)
                return found is not None and float(found.group(1)) > 0

            wait_until("the task to be polled", polled, procs)
            # The store is the user's file in the data directory.
            db = bundle / "rootfs" / "var" / "lib" / "trtc-monitor" / "trtc-monitor.db"
            assert db.stat().st_uid == 10001
        finally:
            codes = [daemon.stop(), simulator.stop()]
        assert codes[0] in (0, -15), daemon.log.read_text()[-2000:]


# ---------------------------------------------------------------------------------------------
# reproducibility


def test_two_builds_of_one_commit_give_the_same_layers(
    image: Image, archive: Path, tmp_path: Path
) -> None:
    """A second build (sharing only the cached Debian root filesystem) gives the same layers.

    The build from this session may be reused from an earlier session of the same commit;
    the second one here is always fresh.
    """
    if not _tree_is_clean():
        pytest.skip("uncommitted changes to the image's sources: a build is not of one commit")
    try:
        again = read_image(build(tmp_path / "build"), tmp_path / "again")
        digests = [layer["digest"] for layer in image.manifest["layers"]]
        assert len(digests) == 2  # Debian, then the application
        assert [layer["digest"] for layer in again.manifest["layers"]] == digests
        assert again.config == image.config
    finally:
        shutil.rmtree(tmp_path / "build", ignore_errors=True)
        shutil.rmtree(tmp_path / "again", ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the Makefile


def test_make_image_runs_the_build_script_and_system_deps_installs_its_tools() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    target = re.search(r"^image:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert target is not None
    assert "deploy/image/build.sh" in target.group(1)
    deps = re.search(r"^SYSTEM_DEPS := ([^\n]*)", makefile, re.M)
    assert deps is not None
    pairs = dict(pair.split(":") for pair in deps.group(1).split())
    # Each tool the image and chart tests run is named with the package that brings it.
    assert pairs["mmdebstrap"] == "mmdebstrap"
    assert pairs["umoci"] == "umoci"
    assert pairs["systemd-analyze"] == "systemd"
    assert pairs["npm"] == "npm"
    assert "apt-get install" in makefile
