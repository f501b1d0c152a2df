"""Random requests to the task API, driven by hypothesis against a daemon served from a
background thread: no body, path or query yields a 500."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
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
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
from tests.api.api_support import APP, Answer, check_error_shape, check_no_secret
from tests.conftest import API_TOKEN, RunningDaemon, daemon_config_text

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
