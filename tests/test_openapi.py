"""The OpenAPI document: structurally valid OpenAPI 3, and true to the routes and answers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from monitor.config import parse_config
from monitor.http.openapi import openapi_document
from monitor.http.ports import HttpContext
from monitor.http.server import build_app
from monitor.simulator import Life, Simulator
from monitor.trtc.sites import Site
from tests.conftest import API_TOKEN, DaemonFactory, daemon_config_text
from tests.support import wait_for_async

APP = 1400000001
METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
PATH_ITEM_KEYS = METHODS | {"summary", "description", "servers", "parameters", "$ref"}
TOP_LEVEL_KEYS = frozenset(
    {"openapi", "info", "servers", "paths", "components", "security", "tags", "externalDocs"}
)
SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
STATUS_KEY = re.compile(r"[1-5](?:[0-9]{2}|XX)|default")


def walk(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object in the document with its JSON pointer."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def sub_schemas(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A schema and every schema nested in it (properties, items, combinators)."""
    yield where, schema
    for name, child in schema.get("properties", {}).items():
        yield from sub_schemas(child, f"{where}/properties/{name}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield from sub_schemas(schema[key], f"{where}/{key}")
    for key in ("oneOf", "anyOf", "allOf"):
        for i, child in enumerate(schema.get(key, [])):
            yield from sub_schemas(child, f"{where}/{key}/{i}")


def schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema: components, and those of parameters, bodies and responses, nested."""
    for name, schema in document["components"]["schemas"].items():
        yield from sub_schemas(schema, f"#/components/schemas/{name}")
    for where, node in walk(document["paths"], "#/paths"):
        if isinstance(node.get("schema"), dict):
            yield from sub_schemas(node["schema"], f"{where}/schema")
    for where, node in walk(document["components"]["responses"], "#/components/responses"):
        if isinstance(node.get("schema"), dict):
            yield from sub_schemas(node["schema"], f"{where}/schema")


@pytest.fixture
def document() -> dict[str, Any]:
    return openapi_document()


@pytest.fixture
def app_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """(path, method) of every route the HTTP app serves under /api/v1; HEAD comes with GET."""
    monkeypatch.setenv("TEST_API_TOKEN", API_TOKEN)
    config = parse_config(daemon_config_text("http://127.0.0.1:9", tmp_path / "m.db"))
    # Only the routes are read: a context whose parts are never called.
    unused = cast("Any", None)
    context = HttpContext(
        tasks=unused,
        writer=unused,
        alerts=unused,
        control=unused,
        metrics=unused,
        callbacks=unused,
        clock=time.time,
        max_body_bytes=config.server.max_body_bytes,
    )
    app = build_app(context, config.callbacks.path if config.callbacks.enabled else None)
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }


class TestStructure:
    def test_it_is_an_openapi_3_document_with_info_paths_and_components(
        self, document: dict[str, Any]
    ) -> None:
        assert set(document) <= TOP_LEVEL_KEYS
        assert re.fullmatch(r"3\.[01]\.[0-9]+", document["openapi"])
        assert isinstance(document["info"]["title"], str)
        assert document["info"]["title"]
        assert isinstance(document["info"]["version"], str)
        assert document["paths"]
        for path, item in document["paths"].items():
            assert path.startswith("/api/v1/"), path
            assert set(item) <= PATH_ITEM_KEYS, (path, set(item) - PATH_ITEM_KEYS)

    def test_every_reference_resolves(self, document: dict[str, Any]) -> None:
        refs = [(where, node["$ref"]) for where, node in walk(document) if "$ref" in node]
        assert refs
        for where, ref in refs:
            target = resolve(document, ref)
            assert isinstance(target, dict), (where, ref)

    def test_every_component_is_used(self, document: dict[str, Any]) -> None:
        used = {node["$ref"] for _, node in walk(document) if "$ref" in node}
        for kind in ("schemas", "responses"):
            for name in document["components"][kind]:
                assert f"#/components/{kind}/{name}" in used, name

    def test_path_template_parameters_are_declared_as_required_path_parameters(
        self, document: dict[str, Any]
    ) -> None:
        for path, item in document["paths"].items():
            in_template = set(re.findall(r"\{([^}]+)\}", path))
            for method in set(item) & METHODS:
                declared = item.get("parameters", []) + item[method].get("parameters", [])
                in_path = {p["name"] for p in declared if p["in"] == "path"}
                assert in_path == in_template, (path, method)
                for parameter in declared:
                    assert parameter["in"] in ("query", "header", "path", "cookie")
                    assert "schema" in parameter or "content" in parameter
                    if parameter["in"] == "path":
                        assert parameter["required"] is True

    def test_operations_have_unique_ids_summaries_and_responses_by_status_code(
        self, document: dict[str, Any]
    ) -> None:
        ids = [operation["operationId"] for _, _, operation in operations(document)]
        assert len(ids) == len(set(ids))
        for path, method, operation in operations(document):
            assert operation["summary"], (path, method)
            assert operation["responses"], (path, method)
            assert any(code.startswith("2") for code in operation["responses"]), (path, method)
            for code, response in operation["responses"].items():
                assert STATUS_KEY.fullmatch(code), (path, method, code)
                target = resolve(document, response["$ref"]) if "$ref" in response else response
                assert target["description"], (path, method, code)

    def test_mutating_operations_need_the_bearer_token_and_reading_ones_do_not(
        self, document: dict[str, Any]
    ) -> None:
        schemes = document["components"]["securitySchemes"]
        assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
        for path, method, operation in operations(document):
            if method in ("post", "delete", "put", "patch"):
                assert operation["security"] == [{"bearer": []}], (path, method)
                assert {"401", "403"} <= set(operation["responses"]), (path, method)
            else:
                assert "security" not in operation, (path, method)

    def test_schemas_use_openapi_types_and_arrays_say_what_they_hold(
        self, document: dict[str, Any]
    ) -> None:
        checked = 0
        for where, schema in schemas(document):
            if "$ref" in schema:
                assert set(schema) == {"$ref"}, where  # one meaning per schema
                continue
            checked += 1
            # OpenAPI 3.1: a list of types says what else the value may be (null).
            declared = schema.get("type", [])
            types = declared if isinstance(declared, list) else [declared]
            assert set(types) <= SCHEMA_TYPES | {"null"}, where
            assert len(set(types) - {"null"}) <= 1, where
            if "array" in types:
                assert "items" in schema, where
            for name in schema.get("required", []):
                assert name in schema.get("properties", {}), (where, name)
            if "enum" in schema:
                assert schema["enum"], where
                assert len(schema["enum"]) == len(set(schema["enum"])), where
        assert checked > 20


class TestAgainstTheApp:
    def test_every_api_route_is_documented_and_every_documented_operation_is_routed(
        self, document: dict[str, Any], app_routes: set[tuple[str, str]]
    ) -> None:
        documented = {(path, method) for path, method, _ in operations(document)}
        assert app_routes
        assert sorted(app_routes - documented) == []
        assert sorted(documented - app_routes) == []

    async def test_the_daemon_serves_the_document(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        async with running.session.get(f"{running.url}/api/v1/openapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            served = await response.json()
        # The configured accounts with their sites: each one's regions per kind are documented.
        assert served == openapi_document({"default": Site.INTERNATIONAL})
        web_rule = served["components"]["schemas"]["Registration"]["allOf"][0]
        assert web_rule["then"]["properties"]["region"]["enum"] == ["ap-singapore"]

    async def test_the_documented_schemas_name_every_field_the_api_answers(
        self, simulator: Simulator, make_daemon: DaemonFactory, document: dict[str, Any]
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, "doc-1", life=Life(idle=600))
        assert (await running.register(APP, task_id, labels={"room": "r"})).status == 201
        base = f"{running.url}/api/v1/tasks"

        async def polled() -> dict[str, Any] | None:
            async with running.session.get(f"{base}/{APP}/{task_id}") as response:
                body: dict[str, Any] = await response.json()
            return body if body["recent_transitions"] else None

        one = await wait_for_async(polled, timeout=10, what="the first poll")
        async with running.session.get(base) as response:
            page = await response.json()
        async with running.session.get(f"{base}/{APP}/{task_id}/transitions") as response:
            history = await response.json()

        components = document["components"]["schemas"]

        def conforms(body: dict[str, Any], name: str) -> None:
            schema = components[name]
            assert set(body) <= set(schema["properties"]), (name, set(body))
            assert set(schema["required"]) <= set(body), (name, set(body))

        conforms(one, "Task")
        conforms(one["health"], "Health")
        conforms(one["recent_transitions"][0], "Transition")
        conforms(page, "TaskPage")
        conforms(page["tasks"][0], "Task")
        conforms(history, "History")
        conforms(history["transitions"][0], "Transition")
        status_enum = components["Task"]["properties"]["status"]["enum"]
        assert one["status"] in status_enum


class TestTheContract:
    """What the document promises about registration and changes, read from the document."""

    def test_a_registration_may_name_exactly_the_configured_accounts(self) -> None:
        document = openapi_document(["default", "backup"])
        account = document["components"]["schemas"]["Registration"]["properties"]["account"]
        assert account["enum"] == ["backup", "default"]
        assert (
            "enum"
            not in openapi_document()["components"]["schemas"]["Registration"]["properties"][
                "account"
            ]
        )

    async def test_the_served_document_names_the_running_configuration_s_accounts(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db").replace(
            "polling:",
            f"  second:\n    secret_id_env: TEST_SECRET_ID\n    secret_key_env: TEST_SECRET_KEY\n"
            f'    endpoint: "{simulator.url}"\npolling:',
            1,
        )
        running = await make_daemon(text=text)
        async with running.session.get(f"{running.url}/api/v1/openapi.json") as response:
            served = await response.json()
        account = served["components"]["schemas"]["Registration"]["properties"]["account"]
        assert account["enum"] == ["default", "second"]

    def test_patch_changes_labels_and_interval_and_says_every_answer(
        self, document: dict[str, Any]
    ) -> None:
        patch = document["paths"]["/api/v1/tasks/{sdk_app_id}/{task_id}"]["patch"]
        body = resolve(
            document, patch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        )
        assert set(body["properties"]) == {"labels", "interval"}
        assert body["additionalProperties"] is False
        assert {"200", "400", "401", "403", "404", "409", "413", "415", "422", "503"} <= set(
            patch["responses"]
        )

    def test_a_conflicting_registration_is_documented_as_409_naming_the_fields(
        self, document: dict[str, Any]
    ) -> None:
        post = document["paths"]["/api/v1/tasks"]["post"]
        conflict = resolve(document, post["responses"]["409"]["$ref"])
        schema = conflict["content"]["application/json"]["schema"]
        error = resolve(document, schema["properties"]["error"]["$ref"])
        assert "fields" in error["required"]
        assert error["properties"]["code"]["enum"] == ["conflict"]
        bulk = document["components"]["schemas"]["BulkResult"]
        assert 409 in bulk["properties"]["results"]["items"]["properties"]["status"]["enum"]
