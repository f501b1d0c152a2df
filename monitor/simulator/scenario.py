"""Scenario files: a YAML description of what the simulator does.

Every key is documented in config/scenario.example.yaml. Unknown keys are errors, and every
error names the key path (``tasks[2].idle: ...``). Durations are seconds as numbers or
Prometheus-style strings ("500ms", "15s", "1m30s", "2h").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from monitor.simulator.callbacks import (
    ALL_EVENTS,
    DEFAULT_EVENTS,
    ENVELOPES,
    SUPPORTED_EVENTS,
    CallbackSettings,
)
from monitor.simulator.faults import Fault, fault_from_mapping
from monitor.simulator.lifecycle import (
    LEAVE_KICKED_BY_SERVER,
    Life,
    LifeRange,
    TaskSpec,
    UploadFault,
    UploadPlan,
    check_upload,
)
from monitor.simulator.protocol import DEFAULT_ENDED_CODE, ENDED_CODES
from monitor.simulator.scenario_keys import (
    Invalid,
    ScenarioError,
    Section,
    int_list,
    parse_duration,
    range_of,
    signed_duration,
)
from monitor.trtc.sites import Site

__all__ = [
    "Credential",
    "Scenario",
    "ScenarioError",
    "TaskSpec",
    "load_scenario",
    "parse_duration",
    "parse_fault",
    "parse_scenario",
    "parse_task",
    "parse_upload",
]


@dataclass(frozen=True, slots=True)
class Credential:
    secret_id: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


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
    site: Site | None = None  # the regions a request signed for another host may use


def _credential(data: object, path: str, env: Mapping[str, str]) -> Credential:
    s = Section(data, path, ("secret_id", "secret_key", "secret_key_env", "token", "token_env"))
    secret_id = s.string("secret_id")
    if secret_id is None:
        raise Invalid(s.key("secret_id"), "required")
    secret_key = s.secret("secret_key", env, required=True)
    assert secret_key is not None  # required=True
    return Credential(secret_id, secret_key, s.secret("token", env, required=False))


def _random_life(data: object, path: str) -> LifeRange:
    s = Section(data, path, ("idle", "in_progress", "exited", "leave_codes", "hang_idle"))
    default = LifeRange()
    return LifeRange(
        idle=range_of(s.raw("idle"), s.key("idle")) if s.has("idle") else default.idle,
        in_progress=(
            range_of(s.raw("in_progress"), s.key("in_progress")) if s.has("in_progress") else None
        ),
        exited=range_of(s.raw("exited"), s.key("exited")) if s.has("exited") else default.exited,
        leave_codes=(
            tuple(int_list(s.raw("leave_codes"), s.key("leave_codes")))
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
    "kind",
    "record_id",
    "recorder_key",
    *_UPLOAD_KEYS,
)
_KINDS = ("cloud", "web")


def _task(data: object, path: str) -> TaskSpec:
    s = Section(data, path, _TASK_KEYS)
    sdk_app_id = s.integer("sdk_app_id", None, minimum=1)
    if sdk_app_id is None:
        raise Invalid(s.key("sdk_app_id"), "required")
    room = s.raw("room_id")
    if room is not None and (isinstance(room, bool) or not isinstance(room, str | int)):
        raise Invalid(s.key("room_id"), f"must be a string or an integer, got {room!r}")
    life = None
    if any(k in s.data for k in _LIFE_KEYS):
        life = _life(s)
    kind = s.string("kind", "cloud") or "cloud"
    if kind not in _KINDS:
        raise Invalid(s.key("kind"), f"must be one of {', '.join(_KINDS)}, got {kind!r}")
    # A web recording goes to VOD (its upload callbacks are 311 and 312).
    vod = s.boolean("vod", kind == "web")
    upload = _upload(s, vod)
    record_id = s.string("record_id")
    if record_id is not None and kind != "web":
        raise Invalid(s.key("record_id"), "only a web recording (kind: web) has a RecordId")
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
        kind=kind,
        record_id=record_id,
        recorder_key=s.string("recorder_key"),
    )


def _upload(s: Section, vod: bool) -> UploadPlan:
    """The upload keys of a task: how its upload callbacks go, and how they fail."""
    fault_name = s.string("upload_failure", UploadFault.NONE.value)
    try:
        fault = UploadFault(fault_name or UploadFault.NONE.value)
    except ValueError:
        known = ", ".join(f.value for f in UploadFault)
        raise Invalid(s.key("upload_failure"), f"must be one of {known}") from None
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
        raise Invalid(s.key(key), str(exc)) from None
    return plan


def parse_upload(data: object, vod: bool, *, source: str = "upload") -> UploadPlan:
    """Only the upload keys of a task (what the control surface's upload switch accepts)."""
    try:
        return _upload(Section(data, "", _UPLOAD_KEYS), vod)
    except Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def _life(s: Section) -> Life:
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
        raise Invalid(path or "(top level)", "must be a mapping")
    plain = dict(data)
    for name in _FAULT_DURATIONS:
        if plain.get(name) is not None:
            plain[name] = parse_duration(plain[name], Section._join(path, name))
    try:
        return fault_from_mapping(plain)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise Invalid(Section._join(path, key), problem) from None


def _callback(data: object, path: str, env: Mapping[str, str]) -> CallbackSettings:
    s = Section(
        data,
        path,
        (
            "url",
            "key",
            "key_env",
            "events",
            "timeout",
            "retry_interval",
            "retry_for",
            "envelope",
        ),
    )
    url = s.string("url")
    if url is None:
        raise Invalid(s.key("url"), "required")
    if not url.startswith(("http://", "https://")):
        raise Invalid(s.key("url"), f"must be an http(s) URL, got {url!r}")
    key = s.secret("key", env, required=True)
    assert key is not None  # required=True
    events = DEFAULT_EVENTS
    if s.raw("events") == "all":
        events = ALL_EVENTS
    elif s.has("events"):
        listed = int_list(s.raw("events"), s.key("events"))
        for i, event in enumerate(listed):
            if event not in SUPPORTED_EVENTS:
                supported = ", ".join(map(str, sorted(SUPPORTED_EVENTS)))
                raise Invalid(f"{s.key('events')}[{i}]", f"must be one of {supported}")
        events = frozenset(listed)
    return CallbackSettings(
        url=url,
        key=key,
        events=events,
        timeout=s.duration("timeout", 5.0) or 0.0,
        retry_interval=s.duration("retry_interval", 10.0) or 0.0,
        retry_for=s.duration("retry_for", 60.0) or 0.0,
        envelope=_envelope(s),
    )


def _envelope(s: Section) -> str:
    envelope = s.string("envelope", "trtc") or "trtc"
    if envelope not in ENVELOPES:
        raise Invalid(s.key("envelope"), f"must be one of {', '.join(ENVELOPES)}")
    return envelope


def _site(s: Section) -> Site | None:
    name = s.string("site")
    if name is None:
        return None
    try:
        return Site(name)
    except ValueError:
        raise Invalid("site", f"must be one of {', '.join(x.value for x in Site)}") from None


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
    "site",
)


def _scenario(data: object, env: Mapping[str, str]) -> Scenario:
    s = Section(data, "", _TOP_KEYS)
    ended_code = s.string("ended_code", DEFAULT_ENDED_CODE) or DEFAULT_ENDED_CODE
    if ended_code not in ENDED_CODES:
        raise Invalid("ended_code", f"must be one of {', '.join(ENDED_CODES)}")
    rate_window = s.duration("rate_window", 1.0) or 0.0
    if rate_window <= 0:
        raise Invalid("rate_window", "must be longer than 0")
    hour_length = s.duration("hour_length", 3600.0) or 0.0
    if hour_length <= 0:
        raise Invalid("hour_length", "must be longer than 0")
    credentials = tuple(
        _credential(item, f"credentials[{i}]", env) for i, item in enumerate(s.items("credentials"))
    )
    ids = [c.secret_id for c in credentials]
    for i, secret_id in enumerate(ids):
        if secret_id in ids[:i]:
            raise Invalid(f"credentials[{i}].secret_id", f"duplicate SecretId {secret_id}")
    tasks = tuple(_task(item, f"tasks[{i}]") for i, item in enumerate(s.items("tasks")))
    seen: set[tuple[int, str]] = set()
    for i, task in enumerate(tasks):
        if task.task_id is None:
            continue
        key = (task.sdk_app_id, task.task_id)
        if key in seen:
            raise Invalid(f"tasks[{i}].task_id", f"duplicate task {task.task_id}")
        seen.add(key)
    return Scenario(
        seed=s.integer("seed", None),
        credentials=credentials,
        rate_limit=s.integer("rate_limit", 20, minimum=1) or 20,
        rate_window=rate_window,
        ended_code=ended_code,
        clock_skew=(
            signed_duration(s.raw("clock_skew"), "clock_skew") if s.has("clock_skew") else 0.0
        ),
        hour_length=hour_length,
        # null lifts the limit
        max_tasks_per_app=s.integer("max_tasks_per_app", 100, minimum=1),
        random_life=_random_life(s.raw("random_life"), "random_life"),
        tasks=tasks,
        faults=tuple(_fault(item, f"faults[{i}]") for i, item in enumerate(s.items("faults"))),
        callback=_callback(s.raw("callback"), "callback", env) if s.has("callback") else None,
        site=_site(s),
    )


def parse_scenario(
    data: object, *, source: str = "scenario", env: Mapping[str, str] | None = None
) -> Scenario:
    """A scenario from already-parsed YAML/JSON data; ScenarioError names the bad key."""
    try:
        return _scenario(data, os.environ if env is None else env)
    except Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def parse_task(data: object, *, source: str = "task") -> TaskSpec:
    """One task in the scenario's ``tasks`` shape (also what the control surface accepts)."""
    try:
        return _task(data, "")
    except Invalid as exc:
        raise ScenarioError(source, exc.key, exc.problem) from None


def parse_fault(data: object, *, source: str = "fault") -> Fault:
    """One fault in the scenario's ``faults`` shape (also what the control surface accepts)."""
    try:
        return _fault(data, "")
    except Invalid as exc:
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
