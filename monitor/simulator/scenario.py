"""Scenario files: a YAML description of what the simulator does.

Every key is documented in config/scenario.example.yaml. Unknown keys are errors, and every
error names the key path (``tasks[2].idle: ...``). Durations are seconds as numbers or
Prometheus-style strings ("500ms", "15s", "1m30s", "2h").
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitor.simulator.callbacks import (
    ALL_EVENTS,
    DEFAULT_EVENTS,
    SUPPORTED_EVENTS,
    CallbackSettings,
)
from monitor.simulator.faults import Fault, fault_from_mapping
from monitor.simulator.lifecycle import (
    LEAVE_KICKED_BY_SERVER,
    Life,
    LifeRange,
    Range,
    UploadFault,
    UploadPlan,
    check_upload,
)
from monitor.simulator.protocol import DEFAULT_ENDED_CODE, ENDED_CODES


class ScenarioError(ValueError):
    """An invalid scenario; ``key`` is the path of the offending key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class _Invalid(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Credential:
    secret_id: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    sdk_app_id: int
    task_id: str | None = None
    life: Life | None = None  # None: drawn from the scenario's random_life
    room_id: str | int | None = None
    user_id: str | None = None
    max_idle_time: float | None = None
    expire_after: float | None = None
    vod: bool = False
    upload: UploadPlan = field(default_factory=UploadPlan)


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int | None = None
    credentials: tuple[Credential, ...] = ()
    rate_limit: int = 20
    rate_window: float = 1.0
    ended_code: str = DEFAULT_ENDED_CODE
    clock_skew: float = 0.0
    hour_length: float = 3600.0
    max_tasks_per_app: int | None = 100
    random_life: LifeRange = field(default_factory=LifeRange)
    tasks: tuple[TaskSpec, ...] = ()
    faults: tuple[Fault, ...] = ()
    callback: CallbackSettings | None = None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from a number or a Prometheus-style duration string."""
    if isinstance(value, bool):
        raise _Invalid(key, f"must be a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise _Invalid(key, f"must be a duration like 500ms, 15s, 1m30s; got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise _Invalid(key, f"must be a duration, got {value!r}")
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise _Invalid(key, f"must be a duration >= 0, got {value!r}")
    return seconds


class _Section:
    """A mapping being read; reading checks types, and unknown keys are refused up front."""

    def __init__(self, data: object, path: str, known: tuple[str, ...]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _Invalid(path or "(top level)", "must be a mapping")
        for key in data:
            if key not in known:
                raise _Invalid(
                    self._join(path, str(key)), f"unknown key (known: {', '.join(known)})"
                )
        self.data: dict[str, Any] = data
        self.path = path

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key(self, name: str) -> str:
        return self._join(self.path, name)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def integer(self, name: str, default: int | None, minimum: int | None = None) -> int | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(self.key(name), f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise _Invalid(self.key(name), f"must be at least {minimum}, got {value}")
        return value

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise _Invalid(self.key(name), f"must be a non-empty string, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise _Invalid(self.key(name), f"must be true or false, got {value!r}")
        return value

    def duration(self, name: str, default: float | None) -> float | None:
        value = self.data.get(name, default)
        return None if value is None else parse_duration(value, self.key(name))

    def probability(self, name: str, default: float) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise _Invalid(self.key(name), f"must be a number between 0 and 1, got {value!r}")
        return float(value)

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise _Invalid(self.key(name), "must be a list")
        return value

    def secret(self, name: str, env: Mapping[str, str], required: bool) -> str | None:
        """A secret given literally as ``name`` or through the variable named by ``name_env``."""
        literal = self.string(name)
        var = self.string(f"{name}_env")
        if literal is not None and var is not None:
            raise _Invalid(self.key(name), f"give either {name} or {name}_env, not both")
        if var is not None:
            value = env.get(var)
            if not value:
                raise _Invalid(self.key(f"{name}_env"), f"environment variable {var} is not set")
            return value
        if literal is None and required:
            raise _Invalid(self.key(name), f"required (or {name}_env)")
        return literal


def _range(value: object, key: str) -> Range:
    if isinstance(value, list):
        if len(value) != 2:
            raise _Invalid(key, "must be a duration or a [min, max] pair")
        lo = parse_duration(value[0], f"{key}[0]")
        hi = parse_duration(value[1], f"{key}[1]")
        if lo > hi:
            raise _Invalid(key, f"min {value[0]!r} exceeds max {value[1]!r}")
        return (lo, hi)
    seconds = parse_duration(value, key)
    return (seconds, seconds)


def _int_list(value: object, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _Invalid(key, "must be a non-empty list of integers")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int):
            raise _Invalid(f"{key}[{i}]", f"must be an integer, got {item!r}")
    return list(value)


def _credential(data: object, path: str, env: Mapping[str, str]) -> Credential:
    s = _Section(data, path, ("secret_id", "secret_key", "secret_key_env", "token", "token_env"))
    secret_id = s.string("secret_id")
    if secret_id is None:
        raise _Invalid(s.key("secret_id"), "required")
    secret_key = s.secret("secret_key", env, required=True)
    assert secret_key is not None  # required=True
    return Credential(secret_id, secret_key, s.secret("token", env, required=False))


def _random_life(data: object, path: str) -> LifeRange:
    s = _Section(data, path, ("idle", "in_progress", "exited", "leave_codes", "hang_idle"))
    default = LifeRange()
    return LifeRange(
        idle=_range(s.raw("idle"), s.key("idle")) if s.has("idle") else default.idle,
        in_progress=(
            _range(s.raw("in_progress"), s.key("in_progress")) if s.has("in_progress") else None
        ),
        exited=_range(s.raw("exited"), s.key("exited")) if s.has("exited") else default.exited,
        leave_codes=(
            tuple(_int_list(s.raw("leave_codes"), s.key("leave_codes")))
            if s.has("leave_codes")
            else default.leave_codes
        ),
        hang_idle=s.probability("hang_idle", 0.0),
    )


_LIFE_KEYS = ("idle", "in_progress", "exited", "leave_code", "hang_idle")
_UPLOAD_KEYS = (
    "mp4",
    "upload_failure",
    "upload_error_code",
    "upload_error_message",
    "upload_finish",
    "upload_recover_after",
)
_TASK_KEYS = (
    "sdk_app_id",
    "task_id",
    "room_id",
    "user_id",
    "idle",
    "in_progress",
    "exited",
    "leave_code",
    "hang_idle",
    "max_idle_time",
    "expire_after",
    "vod",
    *_UPLOAD_KEYS,
)


def _task(data: object, path: str) -> TaskSpec:
    s = _Section(data, path, _TASK_KEYS)
    sdk_app_id = s.integer("sdk_app_id", None, minimum=1)
    if sdk_app_id is None:
        raise _Invalid(s.key("sdk_app_id"), "required")
    room = s.raw("room_id")
    if room is not None and (isinstance(room, bool) or not isinstance(room, str | int)):
        raise _Invalid(s.key("room_id"), f"must be a string or an integer, got {room!r}")
    life = None
    if any(k in s.data for k in _LIFE_KEYS):
        life = _life(s)
    vod = s.boolean("vod", False)
    upload = _upload(s, vod)
    return TaskSpec(
        sdk_app_id=sdk_app_id,
        task_id=s.string("task_id"),
        life=life,
        room_id=room,
        user_id=s.string("user_id"),
        max_idle_time=s.duration("max_idle_time", None),
        expire_after=s.duration("expire_after", None),
        vod=vod,
        upload=upload,
    )


def _upload(s: _Section, vod: bool) -> UploadPlan:
    """The upload keys of a task (SPEC section 8): how its upload callbacks go."""
    fault_name = s.string("upload_failure", UploadFault.NONE.value)
    try:
        fault = UploadFault(fault_name or UploadFault.NONE.value)
    except ValueError:
        known = ", ".join(f.value for f in UploadFault)
        raise _Invalid(s.key("upload_failure"), f"must be one of {known}") from None
    default = UploadPlan()
    plan = UploadPlan(
        mp4=s.boolean("mp4", False),
        fault=fault,
        error_code=s.string("upload_error_code", default.error_code) or default.error_code,
        error_message=(
            s.string("upload_error_message", default.error_message) or default.error_message
        ),
        finish=s.boolean("upload_finish", True),
        recover_after=s.duration("upload_recover_after", None),
    )
    try:
        check_upload(plan, vod)
    except ValueError as exc:
        key = "mp4" if "MP4" in str(exc) and s.has("mp4") else "upload_failure"
        raise _Invalid(s.key(key), str(exc)) from None
    return plan


def parse_upload(data: object, vod: bool, *, source: str = "upload") -> UploadPlan:
    """Only the upload keys of a task (what the control surface's upload switch accepts)."""
    try:
        return _upload(_Section(data, "", _UPLOAD_KEYS), vod)
    except _Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def _life(s: _Section) -> Life:
    return Life(
        idle=s.duration("idle", 1.0) or 0.0,
        in_progress=s.duration("in_progress", None),
        exited=s.duration("exited", 2.0) or 0.0,
        leave_code=s.integer("leave_code", LEAVE_KICKED_BY_SERVER) or 0,
        hang_idle=s.boolean("hang_idle", False),
    )


_FAULT_DURATIONS = ("latency", "jitter", "hold")


def _fault(data: object, path: str) -> Fault:
    if not isinstance(data, dict):
        raise _Invalid(path or "(top level)", "must be a mapping")
    plain = dict(data)
    for name in _FAULT_DURATIONS:
        if plain.get(name) is not None:
            plain[name] = parse_duration(plain[name], _Section._join(path, name))
    try:
        return fault_from_mapping(plain)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise _Invalid(_Section._join(path, key), problem) from None


def _callback(data: object, path: str, env: Mapping[str, str]) -> CallbackSettings:
    s = _Section(
        data, path, ("url", "key", "key_env", "events", "timeout", "retry_interval", "retry_for")
    )
    url = s.string("url")
    if url is None:
        raise _Invalid(s.key("url"), "required")
    if not url.startswith(("http://", "https://")):
        raise _Invalid(s.key("url"), f"must be an http(s) URL, got {url!r}")
    key = s.secret("key", env, required=True)
    assert key is not None  # required=True
    events = DEFAULT_EVENTS
    if s.raw("events") == "all":
        events = ALL_EVENTS
    elif s.has("events"):
        listed = _int_list(s.raw("events"), s.key("events"))
        for i, event in enumerate(listed):
            if event not in SUPPORTED_EVENTS:
                supported = ", ".join(map(str, sorted(SUPPORTED_EVENTS)))
                raise _Invalid(f"{s.key('events')}[{i}]", f"must be one of {supported}")
        events = frozenset(listed)
    return CallbackSettings(
        url=url,
        key=key,
        events=events,
        timeout=s.duration("timeout", 5.0) or 0.0,
        retry_interval=s.duration("retry_interval", 10.0) or 0.0,
        retry_for=s.duration("retry_for", 60.0) or 0.0,
    )


_TOP_KEYS = (
    "seed",
    "credentials",
    "rate_limit",
    "rate_window",
    "ended_code",
    "clock_skew",
    "hour_length",
    "max_tasks_per_app",
    "random_life",
    "tasks",
    "faults",
    "callback",
)


def _signed_duration(value: object, key: str) -> float:
    if isinstance(value, str) and value.startswith("-"):
        return -parse_duration(value[1:], key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return float(value)
    return parse_duration(value, key)


def _scenario(data: object, env: Mapping[str, str]) -> Scenario:
    s = _Section(data, "", _TOP_KEYS)
    ended_code = s.string("ended_code", DEFAULT_ENDED_CODE) or DEFAULT_ENDED_CODE
    if ended_code not in ENDED_CODES:
        raise _Invalid("ended_code", f"must be one of {', '.join(ENDED_CODES)}")
    rate_window = s.duration("rate_window", 1.0) or 0.0
    if rate_window <= 0:
        raise _Invalid("rate_window", "must be longer than 0")
    hour_length = s.duration("hour_length", 3600.0) or 0.0
    if hour_length <= 0:
        raise _Invalid("hour_length", "must be longer than 0")
    credentials = tuple(
        _credential(item, f"credentials[{i}]", env) for i, item in enumerate(s.items("credentials"))
    )
    ids = [c.secret_id for c in credentials]
    for i, secret_id in enumerate(ids):
        if secret_id in ids[:i]:
            raise _Invalid(f"credentials[{i}].secret_id", f"duplicate SecretId {secret_id}")
    tasks = tuple(_task(item, f"tasks[{i}]") for i, item in enumerate(s.items("tasks")))
    seen: set[tuple[int, str]] = set()
    for i, task in enumerate(tasks):
        if task.task_id is None:
            continue
        key = (task.sdk_app_id, task.task_id)
        if key in seen:
            raise _Invalid(f"tasks[{i}].task_id", f"duplicate task {task.task_id}")
        seen.add(key)
    return Scenario(
        seed=s.integer("seed", None),
        credentials=credentials,
        rate_limit=s.integer("rate_limit", 20, minimum=1) or 20,
        rate_window=rate_window,
        ended_code=ended_code,
        clock_skew=(
            _signed_duration(s.raw("clock_skew"), "clock_skew") if s.has("clock_skew") else 0.0
        ),
        hour_length=hour_length,
        # null lifts the limit
        max_tasks_per_app=s.integer("max_tasks_per_app", 100, minimum=1),
        random_life=_random_life(s.raw("random_life"), "random_life"),
        tasks=tasks,
        faults=tuple(_fault(item, f"faults[{i}]") for i, item in enumerate(s.items("faults"))),
        callback=_callback(s.raw("callback"), "callback", env) if s.has("callback") else None,
    )


def parse_scenario(
    data: object, *, source: str = "scenario", env: Mapping[str, str] | None = None
) -> Scenario:
    """A scenario from already-parsed YAML/JSON data; ScenarioError names the bad key."""
    try:
        return _scenario(data, os.environ if env is None else env)
    except _Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def parse_task(data: object, *, source: str = "task") -> TaskSpec:
    """One task in the scenario's ``tasks`` shape (also what the control surface accepts)."""
    try:
        return _task(data, "")
    except _Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def parse_fault(data: object, *, source: str = "fault") -> Fault:
    """One fault in the scenario's ``faults`` shape (also what the control surface accepts)."""
    try:
        return _fault(data, "")
    except _Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def load_scenario(path: Path | str, env: Mapping[str, str] | None = None) -> Scenario:
    """Read and validate a scenario file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(source, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise ScenarioError(source, where, f"not valid YAML: {exc}") from None
    return parse_scenario(data, source=source, env=env)
