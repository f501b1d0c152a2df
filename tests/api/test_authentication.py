"""The API token (docs/http-api.md): what a call without it, or with a wrong one, may do."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.simulator import Simulator
from tests.api.api_support import APP, TOKEN_LINE, Answer, Client
from tests.conftest import API_TOKEN, DaemonFactory, daemon_config_text

# ---------------------------------------------------------------------------------------------
# authentication


class TestAuthentication:
    async def test_mutating_calls_without_a_token_are_401_and_change_nothing(
        self, api: Client
    ) -> None:
        body = {"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou"}
        answer = await api.call("POST", "/api/v1/tasks", body=body, token=None)
        assert answer.status == 401
        assert answer.json["error"]["code"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert len(api.running.daemon.registry) == 0
        assert (await api.register("t-1")).status == 201
        deleted = await api.call("DELETE", f"/api/v1/tasks/{APP}/t-1", token=None)
        assert deleted.status == 401
        assert (await api.task("t-1"))["status"] == "Pending"
        assert (await api.call("POST", "/-/reload", token=None)).status == 401

    @pytest.mark.parametrize(
        "header",
        [
            f"Bearer {API_TOKEN[:-1]}",
            f"Bearer {API_TOKEN}x",
            f"Bearer {API_TOKEN.upper()}",
            f"Bearer x{API_TOKEN}",
            f"Basic {API_TOKEN}",
            f"Bearer{API_TOKEN}",
            API_TOKEN,
            "Bearer ",
        ],
        ids=["prefix", "extra", "case", "leading", "scheme", "no-space", "bare", "empty"],
    )
    async def test_only_the_exact_token_is_accepted(self, api: Client, header: str) -> None:
        body = {"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou"}
        wrong = await api.call(
            "POST", "/api/v1/tasks", body=body, token=None, headers={"Authorization": header}
        )
        assert wrong.status == 401
        assert wrong.json["error"]["code"] == "unauthorized"
        assert len(api.running.daemon.registry) == 0
        right = await api.call(
            "POST", "/api/v1/tasks", body=body, headers={"Authorization": f"bearer {API_TOKEN}"}
        )
        assert right.status == 201

    async def test_without_a_configured_token_mutating_calls_are_403_saying_how_to_set_one(
        self,
        make_daemon: DaemonFactory,
        simulator: Simulator,
        tmp_path: Path,
        answers: list[Answer],
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        assert TOKEN_LINE in text
        api = Client(await make_daemon(text=text.replace(TOKEN_LINE, "")), answers)
        assert api.running.daemon.api_token() is None
        for token in (API_TOKEN, None):
            answer = await api.call(
                "POST",
                "/api/v1/tasks",
                body={"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou"},
                token=token,
            )
            assert answer.status == 403
            assert answer.json["error"]["code"] == "forbidden"
            assert "server.api_token_env" in answer.message
            assert "server.api_token_file" in answer.message
        assert (await api.call("DELETE", f"/api/v1/tasks/{APP}/t-1")).status == 403
        assert (await api.call("POST", "/-/reload")).status == 403
        assert len(api.running.daemon.registry) == 0
        # Reading needs no token at all.
        assert (await api.listing())["total"] == 0
