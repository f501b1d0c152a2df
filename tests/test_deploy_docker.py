"""The Dockerfile under deploy/ and what its ignore file keeps out of the build context."""

from __future__ import annotations

import http.server
import json
import re
import shlex
import sys
import threading
import tomllib
from typing import Any

from tests.deploy_support import DOCKERIGNORE, ROOT, dockerfile, dockerignored, run

# ---------------------------------------------------------------------------------------------
# Container image


class TestDockerfile:
    def test_the_image_is_python_3_11_slim_and_runs_trtc_monitor_as_a_non_root_user(self) -> None:
        assert dockerfile("FROM")[-1] == "python:3.11-slim"
        user = dockerfile("USER")[-1]
        assert user.split(":")[0] not in {"root", "0"}
        assert json.loads(dockerfile("ENTRYPOINT")[-1]) == ["trtc-monitor"]
        assert json.loads(dockerfile("CMD")[-1]) == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]
        assert dockerfile("EXPOSE") == ["9877"]
        assert json.loads(dockerfile("VOLUME")[-1]) == ["/var/lib/trtc-monitor"]

    def test_the_entrypoint_is_the_console_script_of_the_package(self) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert "trtc-monitor" in project["project"]["scripts"]
        assert any(re.search(r"\bpip wheel\b.*\s/src\b", args) for args in dockerfile("RUN"))
        assert any("trtc-recording-monitor" in args for args in dockerfile("RUN"))

    def test_every_copied_source_is_in_the_build_context(self) -> None:
        patterns = [
            line.strip()
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        for args in dockerfile("COPY"):
            if "--from=" in args:
                continue  # from an earlier stage, not from the build context
            *sources, _ = shlex.split(args)
            sources = [s for s in sources if not s.startswith("--")]
            assert sources, args
            for source in sources:
                if source == "README*":
                    continue  # optional by design: setuptools only warns without a readme
                matches = [
                    p.relative_to(ROOT).as_posix()
                    for p in ROOT.glob(source)
                    if not dockerignored(p.relative_to(ROOT).as_posix(), patterns)
                ]
                assert matches, f"COPY source {source} is missing or ignored"
        assert not dockerignored("monitor/cli/__init__.py", patterns)
        assert dockerignored(".venv/bin/python", patterns)

    def test_the_healthcheck_passes_on_a_healthy_endpoint_and_fails_otherwise(self) -> None:
        (check,) = dockerfile("HEALTHCHECK")
        command = json.loads(check[check.index("CMD") + 3 :].strip())
        assert command[0] == "python"
        assert "/-/healthy" in command[-1]

        healthy = True

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = healthy and self.path == "/-/healthy"
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def probe() -> int:
            script = command[-1].replace("127.0.0.1:9877", f"127.0.0.1:{port}")
            assert script != command[-1]
            return run([sys.executable, *command[1:-1], script]).returncode

        try:
            assert probe() == 0
            healthy = False
            assert probe() != 0
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        assert probe() != 0  # nothing listening
