"""`trtc-monitor demo`: the daemon against the built-in simulator, in one process.

Nothing is asked of the user: the demo makes its credentials, API token and callback key,
keeps its data in a fresh temporary folder, writes the daemon's log there and prints a live
summary of transitions and alerts instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import socket
import string
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from monitor.config import Config, ConfigError, load_config, parse_config
from monitor.durations import parse_duration
from monitor.events import TransitionRecorded
from monitor.log import configure_logging
from monitor.models import Kind as ModelKind
from monitor.models import Source, Status, Task
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    CallbackSettings,
    Fault,
    FaultKind,
    Life,
    Simulator,
)
from monitor.simulator.callbacks import ALL_EVENTS
from monitor.simulator.lifecycle import UploadFault, UploadPlan
from monitor.taskspec import TaskSpec
from monitor.uploads import UploadPhase

SDK_APP_ID = 1400000001
SUMMARY_EVERY = 15.0


@dataclass(frozen=True, slots=True)
class Story:
    """One simulated recording and what the demo wants it to show."""

    room: str
    life: Life
    shows: str
    fault: Fault | None = None
    fault_at: float = 0.0  # seconds into the demo, so the task is first seen healthy
    max_idle_time: float | None = None
    vod: bool = False  # recording to VOD (else COS)
    upload: UploadPlan | None = None  # how its upload callbacks go (default: all well)
    # A task the demo registers itself (before its first callback), as a team would: a relay
    # recording with its RecorderKey, or a web-page recording (kind web, in the region the
    # account's site serves web-page recording in).
    recorder_key: str | None = None
    kind: str = "cloud"
    region: str = "ap-guangzhou"


def stories() -> list[Story]:
    return [
        Story("steady", Life(idle=2, in_progress=None), "records all along"),
        Story(
            "normal-stop",
            Life(idle=2, in_progress=20, exited=2, leave_code=0),
            "stopped through the API (leave code 0): an expected exit, no alert",
        ),
        Story(
            "kicked",
            Life(idle=2, in_progress=12, exited=2, leave_code=3),
            "recorder kicked by the server (leave code 3): exit alert at once via callback",
        ),
        Story(
            "idle-hang",
            Life(idle=1, hang_idle=True),
            "stays Idle: RecordingTaskIdle after idle.after",
        ),
        Story(
            "api-errors",
            Life(idle=2, in_progress=None),
            "from 12s, InternalError on 4 polls in a row: RecordingTaskError, then recovery",
            fault=Fault(FaultKind.INTERNAL_ERROR, count=4),
            fault_at=12.0,
        ),
        Story(
            "flaky-network",
            Life(idle=2, in_progress=None),
            "from 20s, requests time out for a while: RecordingTaskStale, then recovery",
            fault=Fault(FaultKind.TIMEOUT, count=4, hold=30.0),
            fault_at=20.0,
        ),
        Story(
            "nobody-came",
            Life(idle=3600, in_progress=None),
            "nobody publishes: Idle until MaxIdleTime (25s), then exits with leave code 99",
            max_idle_time=25,
        ),
        Story(
            "vod-fails",
            Life(idle=2, in_progress=10, exited=3, leave_code=0),
            "to VOD; stops at 12s, the VOD commit fails (311 Status 2): RecordingUploadFailed",
            vod=True,
            upload=UploadPlan(
                fault=UploadFault.VOD_COMMIT_ERROR, error_message="VOD storage quota exceeded"
            ),
        ),
        Story(
            "relay-lesson",
            Life(idle=2, in_progress=None),
            "a relay recording (StartPublishCdnStream): polled with its RecorderKey, shown on "
            "its page and in trtc_recording_task_info",
            recorder_key="relay_lesson-1",
        ),
        Story(
            "web-lesson",
            Life(idle=0, in_progress=18, exited=3, leave_code=0),
            "a web-page recording (StartWebRecord): polled with DescribeWebRecord on its own "
            "budget; its page ends at 18s and the 804 callback records the exit at once",
            kind="web",
            region="ap-singapore",
        ),
        Story(
            "upload-stuck",
            Life(idle=2, in_progress=8, exited=3, leave_code=0),
            "to COS; stops at 10s, its upload never says finished: RecordingUploadOverdue "
            "after alerts.upload.deadline (20s)",
            upload=UploadPlan(finish=False),
        ),
    ]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _demo_config_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    for candidate in (
        Path("config/demo.yaml"),
        Path(__file__).resolve().parent.parent / "config" / "demo.yaml",
    ):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("config/demo.yaml not found; pass --config")


def build_config(path: Path, sim_url: str, port: int, data_dir: Path) -> Config:
    """The demo file with what the demo owns filled in: simulator, port, data folder."""
    load_config(path)  # report the user's own file's errors with their line numbers
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.setdefault("server", {})["listen"] = f"127.0.0.1:{port}"
    raw.setdefault("storage", {})["path"] = str(data_dir / "demo.db")
    for account in raw.get("accounts", {}).values():
        account["endpoint"] = sim_url
    return parse_config(yaml.safe_dump(raw), source=str(path))


class Narrator:
    """Prints what happens, one line per event, for a person watching."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started
        self.rooms: dict[str, str] = {}
        self.transitions = 0
        self.alerts_fired = 0
        self.alerts_resolved = 0
        self.uploads: dict[str, UploadPhase] = {}

    def elapsed(self) -> float:
        return time.time() - self.started

    def stamp(self) -> str:
        return f"{self.elapsed():6.1f}s"

    def line(self, text: str) -> None:
        print(f"{self.stamp()}  {text}", file=self.out, flush=True)

    def name(self, task: Task) -> str:
        return task.labels.get("room") or self.rooms.get(task.task_id) or task.task_id[:12]

    def on_transition(self, event: TransitionRecorded) -> None:
        task, t = event.task, event.transition
        self.transitions += 1
        detail = ""
        if "leave_code" in t.detail:
            detail = f" leave code {t.detail['leave_code']}"
        elif "code" in t.detail:
            detail = f" {t.detail['code']}"
        rid = f"  req {t.request_id[:8]}" if t.request_id else ""
        self.line(
            f"transition  {self.name(task):<14} {t.from_status.value:>10} -> "
            f"{t.to_status.value:<10} via {t.source.value:<8}{detail}{rid}"
        )

    def on_upload(self, task: Task) -> None:
        """One line when a task's upload state changes (polled, like the alerts)."""
        upload = task.upload
        before = self.uploads.get(task.task_id, UploadPhase.NONE)
        if upload.state is before:
            return
        self.uploads[task.task_id] = upload.state
        detail = f"  {len(upload.files)} file(s)" if upload.files else ""
        if upload.state is UploadPhase.FAILED and upload.failure is not None:
            detail = f"  {upload.failure.describe()}"
        self.line(
            f"upload      {self.name(task):<14} {before.value:>10} -> "
            f"{upload.state.value:<10}{detail}".rstrip()
        )

    def on_alert(self, state: str, alertname: str, labels: dict[str, str]) -> None:
        if state == "firing":
            self.alerts_fired += 1
        else:
            self.alerts_resolved += 1
        who = labels.get("room") or labels.get("task_id", "")[:12] or labels.get("account", "")
        mark = "FIRING  " if state == "firing" else "resolved"
        self.line(f"alert       {mark} {alertname:<28} {who}")


def cli_command() -> str:
    """This very ``trtc-monitor``, as a fresh shell can run it: by its full path, since
    nothing says the shell has the virtualenv's ``bin`` on its PATH (a bare
    ``trtc-monitor`` would be "command not found" there)."""
    # sys.executable as it is (a virtualenv's python is a link: resolving it leaves the venv)
    script = Path(sys.executable).parent / "trtc-monitor"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(str(Path(sys.executable).absolute()))} -m monitor"


async def run_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from monitor.daemon import Daemon
    from monitor.http.server import start_server

    duration = parse_duration(args.duration) if args.duration else None
    data_dir = Path(tempfile.mkdtemp(prefix="trtc-monitor-demo-"))
    port = args.port if args.port and _port_free(args.port) else _free_port()
    if args.port and port != args.port:
        print(f"port {args.port} is busy; using {port}", file=out)

    token = secrets.token_urlsafe(24)
    callback_key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    os.environ.update(
        TRTC_DEMO_SECRET_ID=DEFAULT_SECRET_ID,
        TRTC_DEMO_SECRET_KEY=DEFAULT_SECRET_KEY,
        TRTC_DEMO_API_TOKEN=token,
        TRTC_DEMO_CALLBACK_KEY=callback_key,
    )
    try:
        path = _demo_config_path(args.config)
        sim_port = _free_port()
        config = build_config(path, f"http://127.0.0.1:{sim_port}", port, data_dir)
    except (ConfigError, FileNotFoundError) as exc:
        for line in getattr(exc, "errors", [str(exc)]):
            print(f"error: {line}", file=sys.stderr)
        return 2

    log_path = data_dir / "daemon.log"
    log_file = log_path.open("a", encoding="utf-8")
    configure_logging(
        config.logging.format,
        config.logging.level,
        [DEFAULT_SECRET_KEY, token, callback_key],
        stream=log_file,
    )
    base = f"http://127.0.0.1:{port}"
    sim = Simulator(
        seed=7,
        callback=CallbackSettings(
            url=f"{base}{config.callbacks.path}",
            key=callback_key,
            events=ALL_EVENTS,
            retry_interval=2.0,
        ),
    )
    await sim.start(port=sim_port)
    daemon = Daemon(config)
    narrator = Narrator(out, time.time())
    daemon.bus.subscribe(TransitionRecorded, narrator.on_transition)
    await daemon.start()
    runner, _ = await start_server(daemon, config.server.listen)

    print(
        "trtc-monitor demo: the daemon watching recordings in the built-in TRTC simulator\n"
        f"  status page  {base}/\n"
        f"  metrics      {base}/metrics\n"
        f"  tasks        {base}/api/v1/tasks\n"
        f"  alerts       {base}/api/v1/alerts\n"
        f"  health       {base}/-/ready\n"
        f"  simulator    {sim.url}  (SecretId {DEFAULT_SECRET_ID})\n"
        f"  daemon log   {log_path}\n"
        f"  try          TRTC_MONITOR_API_TOKEN={token} "
        f"{cli_command()} tasks --url {base} list\n"
        + (f"Stopping by itself after {args.duration}." if duration else "Ctrl-C stops it.")
        + "\n\nThe recordings:",
        file=out,
        flush=True,
    )
    pending_faults: list[tuple[float, Fault, str]] = []
    for index, story in enumerate(stories()):
        own_id: str | None = None
        if story.recorder_key is not None or story.kind != "cloud":
            own_id = f"demo-{story.room}-{index}"
            spec = TaskSpec(
                sdk_app_id=SDK_APP_ID,
                task_id=own_id,
                region=story.region,
                account="demo",
                labels={"room": story.room},
                recorder_key=story.recorder_key,
                kind=ModelKind(story.kind),
            )
            await daemon.share.writer().register(spec, Source.API)
        task_id = sim.add_task(
            SDK_APP_ID,
            own_id,
            life=story.life,
            room_id=story.room,
            user_id=f"recorder-{story.room}",
            max_idle_time=story.max_idle_time,
            vod=story.vod,
            upload=story.upload,
            kind=story.kind,
            recorder_key=story.recorder_key,
        )
        narrator.rooms[task_id] = story.room
        if story.fault is not None:
            pending_faults.append((story.fault_at, _for_task(story.fault, task_id), story.room))
        print(f"  {story.room:<14} {story.shows}", file=out)
    print(
        "Each is registered by its 'recorder started' callback (event 301), but the relay and "
        "web-page recordings, which the demo registers itself; exits arrive by "
        "callback (302) and are confirmed by polling; the upload callbacks (303-312) tell "
        "where each recording's files went.\n",
        file=out,
        flush=True,
    )

    stop = asyncio.Event()
    daemon.install_signal_handlers(stop)
    firing: dict[str, tuple[str, dict[str, str]]] = {}
    deadline = time.monotonic() + duration if duration else None
    next_summary = time.monotonic() + SUMMARY_EVERY
    try:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            for item in [f for f in pending_faults if narrator.elapsed() >= f[0]]:
                pending_faults.remove(item)
                sim.faults.add(item[1])
                narrator.line(f"fault       {item[2]:<14} simulator now answers {item[1].kind}")
            for task in daemon.registry.tasks():
                narrator.on_upload(task)
            _narrate_alerts(narrator, daemon, firing)
            if now >= next_summary:
                _summary(narrator, daemon.registry.tasks(), sim)
                next_summary = now + SUMMARY_EVERY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    finally:
        _summary(narrator, daemon.registry.tasks(), sim)
        await runner.cleanup()
        await daemon.stop()
        await sim.stop()
        log_file.close()
    print(
        f"\nDemo over: {narrator.transitions} transitions, {narrator.alerts_fired} alerts fired, "
        f"{narrator.alerts_resolved} resolved. Data and log kept in {data_dir}",
        file=out,
    )
    return 0


def _narrate_alerts(
    narrator: Narrator, daemon: Any, shown: dict[str, tuple[str, dict[str, str]]]
) -> None:
    """Print alerts that started or stopped firing since the last look."""
    now = {r.fingerprint: (r.alertname, r.labels) for r in daemon.alerts.firing()}
    for fingerprint, (name, labels) in now.items():
        if fingerprint not in shown:
            narrator.on_alert("firing", name, labels)
    for fingerprint, (name, labels) in shown.items():
        if fingerprint not in now:
            narrator.on_alert("resolved", name, labels)
    shown.clear()
    shown.update(now)


def _for_task(fault: Fault, task_id: str) -> Fault:
    return replace(fault, task_ids=frozenset({task_id}))


def _summary(narrator: Narrator, tasks: Any, sim: Simulator) -> None:
    counts = Counter(t.status for t in tasks)
    shown = ", ".join(f"{s.value} {counts[s]}" for s in Status if counts[s])
    describe = sim.stats()["actions"].get("DescribeCloudRecording", {})
    narrator.line(
        f"summary     tasks: {shown or 'none'} | DescribeCloudRecording calls: "
        f"{describe.get('arrivals', 0)}, at most {describe.get('max_in_window', 0)} in any "
        f"second (limit {sim.rate_limit})"
    )
