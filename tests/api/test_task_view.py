"""The task's JSON and its OpenAPI schema come from one declaration of its fields: the answer
is what earlier versions answered, and the schema names and types what the answer holds (the
API's fuzz tests check whole answers against the document)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from monitor.http.openapi import openapi_document
from monitor.http.task_view import TASK_FIELDS, task_json
from monitor.models import Status
from tests.store.helpers import full_task

# task_json(full_task(), full=True) and task_json(full_task()) as earlier versions answered
# them (compact, ASCII).
EARLIER_FULL = (
    '{"sdk_app_id":1400000001,"task_id":"\\u4efb\\u52a1-42 \\u2713","region":"ap-singapore",'
    '"account":"\\u8d26\\u53f7-b","labels":{"room":"\\u623f\\u95f4-42","customer":"acme","emp'
    'ty":"","emoji":"\\ud83c\\udfa5"},"interval_seconds":7.5,"registered_at":"2023-11-14T22'
    ':13:20.125+00:00","status":"Ended","status_since":"2023-11-14T22:15:00.500+00:00","h'
    'ealth":{"consecutive_errors":2,"last_error_code":"InternalError","last_error_at":"20'
    '23-11-14T22:14:50.000+00:00","last_success_at":"2023-11-14T22:14:40.000+00:00","last'
    '_request_id":"6b0b1c4e-\\u8bf7\\u6c42"},"storage_files":1,"kind":"web","recorder_key":'
    '"relay_42-a","answer_recorder_key":"relay_42-b","upload":{"state":"failed","failure"'
    ':{"event_type":308,"event":"upload error","code":"InvalidParameter","message":"\\u5bc'
    '6\\u94a5 invalid","at":"2023-11-14T22:14:10.250+00:00"},"started_at":null,"stopped_at'
    '":null,"finished_at":null,"files":[{"kind":"cos","name":"\\u6587\\u4ef6.m3u8","begin_m'
    's":1}],"failures":[{"event_type":308,"event":"upload error","code":"InvalidParameter'
    '","message":"\\u5bc6\\u94a5 invalid","at":"2023-11-14T22:14:10.250+00:00"}]},"last_res'
    'ponse":{"Status":"Exited","StorageFileList":[{"UserId":"\\u7528\\u6237","FileName":"a.'
    'm3u8","TrackType":"audio_video"}],"RequestId":"6b0b1c4e-\\u8bf7\\u6c42"},"extra":{"lea'
    've_code":2,"files":["x.mp4"],"vod":{"FileId":"5285890781763144364"}}}'
)
EARLIER_SUMMARY = (
    '{"sdk_app_id":1400000001,"task_id":"\\u4efb\\u52a1-42 \\u2713","region":"ap-singapore",'
    '"account":"\\u8d26\\u53f7-b","labels":{"room":"\\u623f\\u95f4-42","customer":"acme","emp'
    'ty":"","emoji":"\\ud83c\\udfa5"},"interval_seconds":7.5,"registered_at":"2023-11-14T22'
    ':13:20.125+00:00","status":"Ended","status_since":"2023-11-14T22:15:00.500+00:00","h'
    'ealth":{"consecutive_errors":2,"last_error_code":"InternalError","last_error_at":"20'
    '23-11-14T22:14:50.000+00:00","last_success_at":"2023-11-14T22:14:40.000+00:00","last'
    '_request_id":"6b0b1c4e-\\u8bf7\\u6c42"},"storage_files":1,"kind":"web","recorder_key":'
    '"relay_42-a","answer_recorder_key":"relay_42-b","upload":{"state":"failed","failure"'
    ':{"event_type":308,"event":"upload error","code":"InvalidParameter","message":"\\u5bc'
    '6\\u94a5 invalid","at":"2023-11-14T22:14:10.250+00:00"}}}'
)


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    type(None): "null",
}


def _type_allowed(value: object, schema: dict[str, Any]) -> bool:
    declared = schema.get("type")
    if declared is None:  # a $ref: checked by the API's own tests against the document
        return True
    allowed = {declared} if isinstance(declared, str) else set(declared)
    found = _JSON_TYPES[type(value)]
    return found in allowed or (found == "integer" and "number" in allowed)


def test_the_answer_is_what_earlier_versions_answered() -> None:
    assert _compact(task_json(full_task(), full=True)) == EARLIER_FULL
    assert _compact(task_json(full_task())) == EARLIER_SUMMARY


@pytest.mark.parametrize("full", [False, True])
def test_the_schema_names_every_field_of_the_answer_and_requires_the_summarys(
    full: bool,
) -> None:
    task_schema = openapi_document()["components"]["schemas"]["Task"]
    body = task_json(full_task(), full=full)
    assert list(task_schema["properties"])[: len(body)] == list(body)
    assert task_schema["required"] == list(task_json(full_task()))
    health = openapi_document()["components"]["schemas"]["Health"]
    assert health["required"] == list(health["properties"]) == list(body["health"])


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize(
    "task",
    [
        full_task(),
        dataclasses.replace(
            full_task(),
            status=Status.PENDING,
            interval=None,
            last_error_code=None,
            last_error_at=None,
            last_success_at=None,
            last_request_id=None,
            storage_files=None,
            answer_status=None,
            recorder_key=None,
            answer_recorder_key=None,
        ),
    ],
)
def test_every_value_has_a_type_its_schema_allows(full: bool, task: Any) -> None:
    schemas = openapi_document()["components"]["schemas"]
    body = task_json(task, full=full)
    for name, value in body.items():
        assert _type_allowed(value, schemas["Task"]["properties"][name]), name
    for name, value in body["health"].items():
        assert _type_allowed(value, schemas["Health"]["properties"][name]), name


def test_each_field_is_declared_once() -> None:
    names = [f.name for f in TASK_FIELDS]
    assert len(set(names)) == len(names)
