"""The task API (docs/http-api.md) against a real daemon and the simulator on loopback."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http.server import start_server
from monitor.models import REGIONS
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Life, Simulator
from tests.conftest import API_TOKEN, DaemonFactory, RunningDaemon, daemon_config_text
from tests.support import wait_for_async

APP = 1400000001
DESCRIBE = "DescribeCloudRecording"
SECRETS = (API_TOKEN, DEFAULT_SECRET_KEY)
TOKEN_LINE = "  api_token_env: TEST_API_TOKEN\n"


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def message(self) -> str:
        message: str = self.json["error"]["message"]
        return message


def check_error_shape(answer: Answer) -> None:
    """Every 4xx is a JSON ``{"error": {"code", "message"}}``; nothing is ever a 5xx."""
    assert answer.status < 500, answer
    if answer.status >= 400:
        assert answer.headers.get("Content-Type", "").startswith("application/json"), answer
        error = answer.json["error"]
        assert isinstance(error["code"], str)
        assert error["code"]
        assert isinstance(error["message"], str)
        assert error["message"]


def check_no_secret(answer: Answer) -> None:
    whole = answer.text + json.dumps(answer.headers)
    for secret in SECRETS:
        assert secret not in whole, f"a secret leaked in {answer.status} answer"


class Client:
    """Calls one daemon's API and keeps every answer for the secret scan."""

    def __init__(self, running: RunningDaemon, answers: list[Answer]) -> None:
        self.running = running
        self.answers = answers

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        token: str | None = API_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        # A stream, not bytes: aiohttp warns about large byte bodies and warnings are errors.
        payload = io.BytesIO(data) if data is not None else None
        async with self.running.session.request(
            method, f"{self.running.url}{path}", data=payload, headers=sent
        ) as response:
            answer = Answer(response.status, await response.text(), dict(response.headers))
        self.answers.append(answer)
        check_error_shape(answer)
        return answer

    async def register(self, task_id: str, **fields: Any) -> Answer:
        body = {"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou", **fields}
        return await self.call("POST", "/api/v1/tasks", body=body)

    async def task(self, task_id: str, app: int = APP) -> dict[str, Any]:
        answer = await self.call("GET", f"/api/v1/tasks/{app}/{task_id}", token=None)
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json
        return body

    async def listing(self, query: str = "") -> dict[str, Any]:
        answer = await self.call("GET", f"/api/v1/tasks{query}", token=None)
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json
        return body


@pytest.fixture
def answers() -> Iterator[list[Answer]]:
    """Every answer of the test; none may carry the API token or the SecretKey."""
    seen: list[Answer] = []
    yield seen
    for answer in seen:
        check_no_secret(answer)


@pytest.fixture
async def api(simulator: Simulator, make_daemon: DaemonFactory, answers: list[Answer]) -> Client:
    return Client(await make_daemon(simulator.url), answers)


def arrivals_of(simulator: Simulator, task_id: str) -> int:
    return sum(1 for a in simulator.arrivals if a.action == DESCRIBE and a.task_id == task_id)


# ---------------------------------------------------------------------------------------------
# registration and reading


class TestRegistration:
    async def test_registering_answers_201_with_the_task_and_again_200_with_the_same_task(
        self, api: Client
    ) -> None:
        first = await api.register("t-1", labels={"room": "r-1"}, interval="5s")
        assert first.status == 201
        task = first.json
        assert (task["sdk_app_id"], task["task_id"], task["region"]) == (
            APP,
            "t-1",
            "ap-guangzhou",
        )
        assert task["account"] == "default"
        assert task["labels"] == {"room": "r-1"}
        assert task["interval_seconds"] == 5.0
        assert task["status"] == "Pending"

        again = await api.register("t-1", labels={"room": "r-1"}, interval="5s")
        assert again.status == 200
        assert again.json["registered_at"] == task["registered_at"]
        assert again.json["task_id"] == "t-1"
        assert len(api.running.daemon.registry) == 1

    async def test_concurrent_registrations_of_one_task_create_it_once(self, api: Client) -> None:
        answers = await asyncio.gather(*(api.register("same") for _ in range(5)))
        assert sorted(a.status for a in answers) == [200, 200, 200, 200, 201]
        assert len({a.json["registered_at"] for a in answers}) == 1

    async def test_a_polled_task_shows_status_health_and_transitions_with_request_ids(
        self, api: Client, simulator: Simulator
    ) -> None:
        task_id = simulator.add_task(APP, "live-1", life=Life(idle=600))
        assert (await api.register(task_id)).status == 201

        async def observed() -> dict[str, Any] | None:
            body = await api.task(task_id)
            return body if body["status"] == "Idle" else None

        body = await wait_for_async(observed, timeout=10, what="the first poll")
        assert body["health"]["consecutive_errors"] == 0
        assert body["health"]["last_success_at"] is not None
        assert body["health"]["last_request_id"]
        assert body["last_response"]["Status"] == "Idle"
        recent = body["recent_transitions"]
        assert [(t["from"], t["to"], t["source"]) for t in recent] == [("Pending", "Idle", "poll")]
        assert recent[0]["request_id"]
        assert recent[0]["seq"] is not None
        assert arrivals_of(simulator, task_id) >= 1

    async def test_the_transitions_endpoint_returns_the_full_history_newest_first(
        self, api: Client, simulator: Simulator
    ) -> None:
        task_id = simulator.add_task(APP, "short-1", life=Life(idle=0.6, in_progress=600))
        await api.register(task_id)

        async def in_progress() -> bool:
            status: str = (await api.task(task_id))["status"]
            return status == "InProgress"

        await wait_for_async(in_progress, timeout=10, what="InProgress")
        assert (await api.call("DELETE", f"/api/v1/tasks/{APP}/{task_id}")).status == 200
        answer = await api.call("GET", f"/api/v1/tasks/{APP}/{task_id}/transitions", token=None)
        assert answer.status == 200
        history = answer.json
        assert (history["sdk_app_id"], history["task_id"]) == (APP, task_id)
        steps = [(t["from"], t["to"], t["source"]) for t in history["transitions"]]
        assert steps == [
            ("InProgress", "Removed", "api"),
            ("Idle", "InProgress", "poll"),
            ("Pending", "Idle", "poll"),
        ]
        seqs = [t["seq"] for t in history["transitions"]]
        assert seqs == sorted(seqs, reverse=True)

    async def test_deleting_marks_the_task_removed_and_stops_polling_it(
        self, api: Client, simulator: Simulator
    ) -> None:
        gone = simulator.add_task(APP, "gone-1", life=Life(idle=600))
        kept = simulator.add_task(APP, "kept-1", life=Life(idle=600))
        await api.register(gone)
        await api.register(kept)

        async def both_polled() -> bool:
            return arrivals_of(simulator, gone) >= 1 and arrivals_of(simulator, kept) >= 1

        await wait_for_async(both_polled, timeout=10, what="both tasks polled")
        answer = await api.call("DELETE", f"/api/v1/tasks/{APP}/{gone}")
        assert answer.status == 200
        assert answer.json["status"] == "Removed"
        assert (await api.task(gone))["status"] == "Removed"

        # A poll already on the wire may still land: count from the next poll of the other task.
        start = arrivals_of(simulator, kept)

        async def kept_polled(times: int) -> bool:
            return arrivals_of(simulator, kept) >= start + times

        await wait_for_async(lambda: kept_polled(1), timeout=10, what="kept task polled")
        baseline = arrivals_of(simulator, gone)
        await wait_for_async(lambda: kept_polled(3), timeout=10, what="kept task polled twice")
        assert arrivals_of(simulator, gone) == baseline
        # Deleting again is harmless and answers the removed task.
        again = await api.call("DELETE", f"/api/v1/tasks/{APP}/{gone}")
        assert again.status == 200
        assert again.json["status"] == "Removed"


# ---------------------------------------------------------------------------------------------
# listing


class TestBulkRegistration:
    async def test_an_array_with_invalid_items_is_refused_whole_naming_each_by_index(
        self, api: Client
    ) -> None:
        bad = {7: {"region": "ap-nowhere"}, 500: {"interval": "100ms"}, 999: {"colour": "red"}}
        specs: list[Any] = [
            {"sdk_app_id": APP, "task_id": f"bulk-{i:04d}", "region": "ap-mumbai", **bad.get(i, {})}
            for i in range(1000)
        ]
        specs[3] = "not an object"
        answer = await api.call("POST", "/api/v1/tasks", body=specs)
        assert answer.status == 422, answer
        problems = {p["index"]: p["message"] for p in answer.json["error"]["items"]}
        assert sorted(problems) == [3, 7, 500, 999]
        assert problems[7].startswith("region:")
        assert problems[500].startswith("interval:")
        assert problems[999].startswith("colour:")
        assert len(api.running.daemon.registry) == 0
        assert await api.running.daemon.store.load_tasks() == []

        # Without the invalid items: registered in one go, answered by index.
        valid = [s for i, s in enumerate(specs) if i not in (3, *bad)]
        body = (await api.call("POST", "/api/v1/tasks", body=valid)).json
        assert (body["created"], body["existing"], body["invalid"]) == (996, 0, 0)
        results = body["results"]
        assert [r["index"] for r in results] == list(range(996))
        assert results[0]["status"] == 201
        assert results[0]["task"]["task_id"] == "bulk-0000"
        assert len(api.running.daemon.registry) == 996
        stored = await api.running.daemon.store.load_tasks()
        assert len(stored) == 996

        # Idempotent: the same array again registers nothing new.
        again = (await api.call("POST", "/api/v1/tasks", body=valid)).json
        assert (again["created"], again["existing"], again["conflicts"]) == (0, 996, 0)
        assert len(api.running.daemon.registry) == 996

    async def test_an_array_repeating_a_task_registers_it_once(self, api: Client) -> None:
        spec = {"sdk_app_id": APP, "task_id": "twice", "region": "ap-mumbai"}
        body = (await api.call("POST", "/api/v1/tasks", body=[spec, spec])).json
        assert [r["status"] for r in body["results"]] == [201, 200]

    @pytest.mark.parametrize(("size", "status"), [(0, 400), (1001, 422)])
    async def test_an_empty_or_too_long_array_is_refused_whole(
        self, api: Client, size: int, status: int
    ) -> None:
        specs = [
            {"sdk_app_id": APP, "task_id": f"t{i}", "region": "ap-mumbai"} for i in range(size)
        ]
        answer = await api.call("POST", "/api/v1/tasks", body=specs)
        assert answer.status == status
        assert len(api.running.daemon.registry) == 0


class TestListing:
    async def test_filters_by_status_region_account_and_labels(
        self,
        make_daemon: DaemonFactory,
        simulator: Simulator,
        tmp_path: Path,
        answers: list[Answer],
    ) -> None:
        second_account = (
            "accounts:\n"
            "  other:\n"
            "    secret_id_env: TEST_SECRET_ID\n"
            "    secret_key_env: TEST_SECRET_KEY\n"
            f'    endpoint: "{simulator.url}"\n'
        )
        text = daemon_config_text(simulator.url, tmp_path / "m.db").replace(
            "accounts:\n", second_account, 1
        )
        api = Client(await make_daemon(text=text), answers)
        idle = simulator.add_task(APP, "idle-1", life=Life(idle=600))
        simulator.add_task(APP, "other-1", life=Life(idle=600))
        await api.register(idle, labels={"room": "a", "customer": "acme"})
        await api.register("unknown-1", region="ap-mumbai", labels={"room": "a"})
        await api.register("other-1", region="ap-mumbai", account="other", labels={"room": "b"})

        async def settled() -> bool:
            tasks = api.running.daemon.registry.tasks()
            statuses = {task.task_id: task.status.value for task in tasks}
            return statuses == {"idle-1": "Idle", "other-1": "Idle", "unknown-1": "Ended"}

        await wait_for_async(settled, timeout=10, what="first polls")

        async def ids(query: str) -> list[str]:
            return [t["task_id"] for t in (await api.listing(query))["tasks"]]

        assert await ids("") == ["idle-1", "other-1", "unknown-1"]
        assert await ids("?status=Idle") == ["idle-1", "other-1"]
        assert await ids("?status=Ended") == ["unknown-1"]
        assert await ids("?region=ap-mumbai") == ["other-1", "unknown-1"]
        assert await ids("?account=other") == ["other-1"]
        assert await ids("?account=nobody") == []
        assert await ids("?label=room:a") == ["idle-1", "unknown-1"]
        assert await ids("?label=room:a&label=customer:acme") == ["idle-1"]
        assert await ids("?label=room:b&region=ap-mumbai&account=other") == ["other-1"]
        assert await ids("?label=room:c") == []

    async def test_pages_with_limit_offset_next_offset_and_total(self, api: Client) -> None:
        for i in range(5):
            await api.register(f"page-{i}")
        first = await api.listing("?limit=2")
        assert first["total"] == 5
        assert [t["task_id"] for t in first["tasks"]] == ["page-0", "page-1"]
        assert first["next_offset"] == 2
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = await api.listing(f"?limit=2&offset={offset}")
            assert page["total"] == 5
            seen += [t["task_id"] for t in page["tasks"]]
            offset = page["next_offset"]
        assert seen == [f"page-{i}" for i in range(5)]
        past = await api.listing("?offset=10")
        assert (past["tasks"], past["total"], past["next_offset"]) == ([], 5, None)
        default = await api.listing()
        assert len(default["tasks"]) == 5
        assert default["next_offset"] is None

    @pytest.mark.parametrize(
        ("query", "name"),
        [
            ("status=Running", "status"),
            ("region=mars-1", "region"),
            ("label=room", "label"),
            ("label=1bad:x", "label"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("limit=%C2%B2", "limit"),
            ("limit=" + "9" * 5000, "limit"),
            ("offset=-5", "offset"),
            ("offset=1.5", "offset"),
        ],
    )
    async def test_bad_filters_and_page_parameters_are_400_naming_the_parameter(
        self, api: Client, query: str, name: str
    ) -> None:
        answer = await api.call("GET", f"/api/v1/tasks?{query}", token=None)
        assert answer.status == 400
        assert answer.message.startswith(f"{name}:")


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


# ---------------------------------------------------------------------------------------------
# bad input

VALID = {"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou"}


class TestBadInput:
    @pytest.mark.parametrize(
        "raw",
        [b"", b"{", b'{"sdk_app_id": 1,}', b"\xff\xfe\x00", b"{'a': 1}", b"[" * 100_000, b"NaN"],
        ids=["empty", "open", "trailing-comma", "not-utf8", "quotes", "deep", "nan"],
    )
    async def test_malformed_json_is_400(self, api: Client, raw: bytes) -> None:
        answer = await api.call(
            "POST", "/api/v1/tasks", data=raw, headers={"Content-Type": "application/json"}
        )
        assert answer.status == 400
        assert answer.json["error"]["code"] == "malformed_json"

    @pytest.mark.parametrize("body", ["t-1", 42, None])
    async def test_a_body_that_is_not_an_object_is_400(self, api: Client, body: Any) -> None:
        answer = await api.call(
            "POST",
            "/api/v1/tasks",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == 400
        assert "object" in answer.message

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"sdk_app_id": "abc"}, "sdk_app_id"),
            ({"sdk_app_id": -1}, "sdk_app_id"),
            ({"sdk_app_id": 0}, "sdk_app_id"),
            ({"sdk_app_id": True}, "sdk_app_id"),
            ({"sdk_app_id": 1.5}, "sdk_app_id"),
            ({"sdk_app_id": 2**64}, "sdk_app_id"),
            ({"sdk_app_id": 10**400}, "sdk_app_id"),
            ({"sdk_app_id": None}, "sdk_app_id"),
            ({"task_id": "x" * 257}, "task_id"),
            ({"task_id": "with space"}, "task_id"),
            ({"task_id": "a/b"}, "task_id"),
            ({"task_id": ""}, "task_id"),
            ({"task_id": 7}, "task_id"),
            ({"region": "mars-1"}, "region"),
            ({"region": ["ap-guangzhou"]}, "region"),
            ({"account": "nobody"}, "account"),
            ({"account": 1}, "account"),
            ({"labels": "room=a"}, "labels"),
            ({"labels": ["room"]}, "labels"),
            ({"labels": {"1room": "a"}}, "labels.1room"),
            ({"labels": {"__room": "a"}}, "labels.__room"),
            ({"labels": {"room-x": "a"}}, "labels.room-x"),
            ({"labels": {"task_id": "a"}}, "labels.task_id"),
            ({"labels": {"status": "a"}}, "labels.status"),
            ({"labels": {"room": 1}}, "labels.room"),
            ({"labels": {"room": "x" * 257}}, "labels.room"),
            ({"labels": {f"l{i}": "v" for i in range(33)}}, "labels"),
            ({"interval": "fast"}, "interval"),
            ({"interval": 0}, "interval"),
            ({"interval": "0s"}, "interval"),
            ({"interval": -5}, "interval"),
            ({"interval": "400d"}, "interval"),
            ({"interval": 10**9}, "interval"),
            ({"interval": 10**400}, "interval"),
            ({"interval": 1e308}, "interval"),
            ({"interval": True}, "interval"),
            ({"colour": "red"}, "colour"),
        ],
    )
    async def test_wrong_fields_are_422_naming_the_field(
        self, api: Client, change: dict[str, Any], field: str
    ) -> None:
        answer = await api.call("POST", "/api/v1/tasks", body={**VALID, **change})
        assert answer.status == 422, answer
        assert answer.json["error"]["code"] == "invalid"
        assert answer.message.startswith(f"{field}:"), answer.message
        assert len(api.running.daemon.registry) == 0

    @pytest.mark.parametrize("missing", ["sdk_app_id", "task_id", "region"])
    async def test_a_missing_required_field_is_422_naming_it(
        self, api: Client, missing: str
    ) -> None:
        body = {k: v for k, v in VALID.items() if k != missing}
        answer = await api.call("POST", "/api/v1/tasks", body=body)
        assert answer.status == 422
        assert answer.message == f"{missing}: is required"

    async def test_an_oversized_body_is_413_with_a_json_error(self, api: Client) -> None:
        limit = api.running.daemon.config.server.max_body_bytes
        assert limit == 1024 * 1024
        padding = "x" * limit
        answer = await api.call("POST", "/api/v1/tasks", body={**VALID, "labels": {"p": padding}})
        assert answer.status == 413
        assert answer.json["error"]["code"] == "payload_too_large"
        assert str(limit) in answer.message
        assert len(api.running.daemon.registry) == 0

    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
    )
    async def test_a_wrong_content_type_is_415(self, api: Client, content_type: str) -> None:
        answer = await api.call(
            "POST",
            "/api/v1/tasks",
            data=json.dumps(VALID).encode(),
            headers={"Content-Type": content_type},
        )
        assert answer.status == 415
        assert "application/json" in answer.message

    async def test_json_without_a_content_type_is_accepted(self, api: Client) -> None:
        answer = await api.call("POST", "/api/v1/tasks", data=json.dumps(VALID).encode())
        assert answer.status == 201

    @pytest.mark.parametrize(
        "path", ["/nope", "/api/v1", "/api/v1/task", "/api/v1/tasks/1/x/y/z", "/api/v2/tasks"]
    )
    async def test_unknown_paths_are_404_json(self, api: Client, path: str) -> None:
        answer = await api.call("GET", path, token=None)
        assert answer.status == 404
        assert answer.json["error"]["code"] == "not_found"

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("PUT", "/api/v1/tasks", {"GET", "POST"}),
            ("DELETE", "/api/v1/tasks", {"GET", "POST"}),
            ("PUT", f"/api/v1/tasks/{APP}/t-1", {"GET", "DELETE", "PATCH"}),
            ("POST", f"/api/v1/tasks/{APP}/t-1/transitions", {"GET"}),
            ("POST", "/api/v1/openapi.json", {"GET"}),
        ],
    )
    async def test_a_wrong_method_is_405_json_saying_what_is_allowed(
        self, api: Client, method: str, path: str, allowed: set[str]
    ) -> None:
        answer = await api.call(method, path, body=VALID)
        assert answer.status == 405
        assert answer.json["error"]["code"] == "method_not_allowed"
        assert set(answer.headers["Allow"].split(",")) - {"HEAD"} == allowed

    @pytest.mark.parametrize(
        "segment",
        [
            "abc/x",
            "0/x",
            "-1/x",
            "1.5/x",
            "%C2%B2/x",
            "%D9%A1/x",
            "9" * 5000 + "/x",
            "99999999999999999999/x",
            f"{APP}/with%20space",
            f"{APP}/" + "x" * 257,
        ],
    )
    async def test_bad_path_parameters_are_400(self, api: Client, segment: str) -> None:
        for suffix in ("", "/transitions"):
            answer = await api.call("GET", f"/api/v1/tasks/{segment}{suffix}", token=None)
            assert answer.status == 400, (segment, suffix)
            assert answer.message.split(":")[0] in ("sdk_app_id", "task_id")
        answer = await api.call("DELETE", f"/api/v1/tasks/{segment}")
        assert answer.status == 400

    async def test_an_unknown_task_is_404(self, api: Client) -> None:
        for method, suffix in (("GET", ""), ("GET", "/transitions"), ("DELETE", "")):
            answer = await api.call(method, f"/api/v1/tasks/{APP}/nobody{suffix}")
            assert answer.status == 404
            assert answer.json["error"]["code"] == "not_found"


# ---------------------------------------------------------------------------------------------
# fuzzing: a daemon on its own loop, so that hypothesis drives it with a blocking client


class BackgroundDaemon:
    """A simulator and a daemon served from an event loop in a background thread."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-daemon")
        self.simulator = Simulator(seed=2)
        self.running: RunningDaemon | None = None
        self.port = 0

    def __enter__(self) -> BackgroundDaemon:
        self.thread.start()
        url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        self.port = urllib.parse.urlsplit(url).port or 0
        return self

    async def _start(self) -> str:
        await self.simulator.start()
        config = parse_config(daemon_config_text(self.simulator.url, self.db))
        daemon = Daemon(config)
        await daemon.start()
        runner, url = await start_server(daemon, config.server.listen)
        self.running = RunningDaemon(daemon, url, runner, aiohttp.ClientSession())
        return url

    async def _stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            await self.running.session.close()
        await self.simulator.stop()

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()

    def request(
        self, method: str, target: str, body: bytes | None = None, token: bool = True
    ) -> Answer:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {API_TOKEN}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            answer = Answer(response.status, text, dict(response.getheaders()))
        finally:
            connection.close()
        check_error_shape(answer)
        check_no_secret(answer)
        return answer


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundDaemon]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEST_SECRET_ID", DEFAULT_SECRET_ID)
        patch.setenv("TEST_SECRET_KEY", DEFAULT_SECRET_KEY)
        patch.setenv("TEST_API_TOKEN", API_TOKEN)
        with BackgroundDaemon(tmp_path_factory.mktemp("fuzz") / "monitor.db") as background:
            yield background


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# Where parsers are known to trip: integers past 64 bits and past the float range, Unicode
# digits that str.isdigit() accepts but int() refuses (or reads as if ASCII), deep nesting.
big_integers = st.integers(min_value=2**63 - 2, max_value=2**64) | st.integers(
    min_value=10**300, max_value=10**400
)
digit_text = st.text(
    alphabet=st.characters(categories=["Nd", "No"]).filter(str.isdigit), min_size=1, max_size=8
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | big_integers
    | big_integers.map(lambda n: -n)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | digit_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Nearly valid registrations reach the deeper validators instead of failing on the first field.
near_registrations = st.fixed_dictionaries(
    {
        "sdk_app_id": st.integers(min_value=-5, max_value=2**64) | json_values,
        "task_id": st.text(min_size=0, max_size=300) | json_values,
        "region": st.sampled_from(REGIONS) | json_values,
    },
    optional={
        "account": st.just("default") | json_values,
        "labels": st.dictionaries(st.text(max_size=10), st.text(max_size=10) | json_values)
        | json_values,
        "interval": st.sampled_from(["1s", "15s", "1h", "25h", "0s", "1x"])
        | st.floats(allow_nan=False)
        | json_values,
    },
)
valid_registrations = st.fixed_dictionaries(
    {
        "sdk_app_id": st.just(APP),
        "task_id": st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
        "region": st.sampled_from(REGIONS),
    },
    optional={
        "labels": st.dictionaries(
            st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.text(max_size=8), max_size=3
        ),
        "interval": big_integers | big_integers.map(lambda n: -n) | st.floats() | json_values,
    },
)
deep_nesting = st.integers(min_value=1, max_value=200_000).map(lambda n: b"[" * n + b"]" * n)
raw_bodies = (
    st.binary(max_size=200)
    | deep_nesting
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
segments = (st.text(max_size=30) | digit_text | st.integers().map(str)).map(
    lambda s: urllib.parse.quote(s, safe="")
)
query_keys = st.sampled_from(["status", "region", "account", "label", "limit", "offset"]) | st.text(
    max_size=8
)
# 4400 digits pass int()'s 4300-digit limit; aiohttp itself refuses request lines over 8190
# bytes (a plain-text 400 before any handler runs), so queries stay under that.
query_values = st.text(max_size=30) | digit_text | st.integers().map(str) | st.just("9" * 4400)
queries = (
    st.lists(st.tuples(query_keys, query_values), max_size=4)
    .map(urllib.parse.urlencode)
    .filter(lambda query: len(query) < 7000)
)
raw_queries = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=40,
)


class TestFuzz:
    @FUZZ
    @given(body=json_values | near_registrations | valid_registrations)
    def test_random_json_never_causes_a_500(self, fuzzed: BackgroundDaemon, body: Any) -> None:
        answer = fuzzed.request("POST", "/api/v1/tasks", json.dumps(body).encode())
        assert answer.status in (200, 201, 400, 409, 422), answer

    @FUZZ
    @given(body=raw_bodies)
    def test_random_bytes_never_cause_a_500(self, fuzzed: BackgroundDaemon, body: bytes) -> None:
        answer = fuzzed.request("POST", "/api/v1/tasks", body)
        assert answer.status in (200, 201, 400, 409, 422), answer

    @FUZZ
    @given(
        template=st.sampled_from(
            [
                "/api/v1/tasks/{a}/{b}",
                "/api/v1/tasks/{a}/{b}/transitions",
                "/api/v1/tasks/1400000001/{b}",
                "/api/v1/{a}",
                "/{a}/{b}",
            ]
        ),
        a=segments,
        b=segments,
        query=queries | raw_queries,
        method=st.sampled_from(["GET", "DELETE"]),
    )
    def test_random_paths_and_queries_never_cause_a_500(
        self, fuzzed: BackgroundDaemon, template: str, a: str, b: str, query: str, method: str
    ) -> None:
        target = template.format(a=a, b=b)
        answer = fuzzed.request(method, f"{target}?{query}" if query else target)
        assert answer.status in (200, 400, 404, 405), answer

    @FUZZ
    @given(query=queries | raw_queries)
    def test_random_list_queries_never_cause_a_500(
        self, fuzzed: BackgroundDaemon, query: str
    ) -> None:
        answer = fuzzed.request("GET", f"/api/v1/tasks?{query}", token=False)
        assert answer.status in (200, 400), answer
