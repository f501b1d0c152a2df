"""Bad input to the task API (docs/http-api.md): every one refused with a documented JSON
error, none a 500, nothing changed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.api_support import APP, Client

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
