"""The argument parser: every command, its options and the function that runs it."""

from __future__ import annotations

import argparse
import os

from monitor import __version__
from monitor.cli.accounts import cmd_credentials, cmd_describe
from monitor.cli.common import DEFAULT_CONFIG, DEFAULT_URL
from monitor.cli.local import cmd_demo, cmd_simulate
from monitor.cli.run import cmd_check_config, cmd_run, cmd_version
from monitor.cli.store import cmd_store
from monitor.cli.tasks import cmd_tasks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trtc-monitor", description="Monitor Tencent TRTC on-cloud recording tasks."
    )
    parser.add_argument("--version", action="version", version=f"trtc-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="web configuration file of Prometheus exporters (TLS, basic auth); "
        "wins over server.web_config_file",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "check-config",
        help="validate a config file as `run` would (its secrets too)",
        description="Checks what `run` checks before it starts: the file, every secret it "
        "names, the access hosts. Exit 0 when `run` would take it, 1 with every error.",
    )
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--syntax-only",
        action="store_true",
        help="check the file alone (on a machine that is not the one that runs it): "
        "secrets that cannot be read here are warnings",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="the main port's web configuration file, as given to run (wins over "
        "server.web_config_file)",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="daemon + built-in simulator, zero set-up")
    p.add_argument("--duration", help="stop after this long, e.g. 60s (default: until Ctrl-C)")
    p.add_argument("--port", type=int, default=9877, help="daemon port (default 9877; 0 = any)")
    p.add_argument("--config", help="demo config (default config/demo.yaml)")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 6),
        metavar="N",
        help="N replicas on one local redis-server, one killed to show the takeover (1-5)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="run only the TRTC API simulator")
    p.add_argument("--listen", default="127.0.0.1:18080", help="host:port (default %(default)s)")
    p.add_argument("--scenario", help="scenario YAML file")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("describe", help="one DescribeCloudRecording call")
    p.add_argument("--sdk-app-id", type=int, required=True)
    p.add_argument("--task-id", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("-c", "--config")
    p.add_argument("--account", default="default")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser(
        "credentials", help="show where each account's credentials come from (no secrets)"
    )
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("--account", help="only this account (default: all)")
    p.set_defaults(func=cmd_credentials)

    p = sub.add_parser("tasks", help="manage tasks through the daemon's API")
    p.add_argument(
        "--url",
        default=os.environ.get("TRTC_MONITOR_URL", DEFAULT_URL),
        help="daemon URL (default %(default)s; env TRTC_MONITOR_URL)",
    )
    p.add_argument(
        "--cacert",
        default=os.environ.get("TRTC_MONITOR_CA_FILE"),
        metavar="FILE",
        help="CA certificates to trust for an https URL (env TRTC_MONITOR_CA_FILE); the "
        "token comes from TRTC_MONITOR_API_TOKEN, a basic auth login from "
        "TRTC_MONITOR_BASIC_AUTH=user:password",
    )
    tsub = p.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    a = tsub.add_parser("add", help="register a task, or many from a file")
    a.add_argument("--sdk-app-id", type=int)
    a.add_argument("--task-id")
    a.add_argument("--region")
    a.add_argument(
        "--file",
        help="a JSON or YAML list of tasks ({sdk_app_id, task_id, region, ...} each), "
        "registered in one request (at most 1000)",
    )
    a.add_argument("--account")
    a.add_argument("--label", action="append", default=[], help="name=value (repeatable)")
    a.add_argument("--interval", help="poll interval, e.g. 10s")
    a.add_argument(
        "--recorder-key",
        help="a relay recording's RecorderKey (McuRecordParams.RecordKey), sent with every poll",
    )
    a.add_argument(
        "--kind",
        choices=("cloud", "web"),
        help="cloud (default): a cloud recording; web: a web-page recording (StartWebRecord)",
    )
    a = tsub.add_parser("list", help="list tasks")
    a.add_argument("--status")
    a.add_argument("--region")
    a.add_argument("--account")
    a.add_argument(
        "--label", action="append", default=[], help="name=value (repeatable; all must match)"
    )
    a.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("show", "show one task"), ("remove", "deregister a task")):
        a = tsub.add_parser(name, help=text)
        a.add_argument("--sdk-app-id", type=int, required=True)
        a.add_argument("--task-id", required=True)
    # tasks update: a block of its own.
    a = tsub.add_parser(
        "update",
        help="change a task's labels and/or interval",
        description="Labels given replace the task's whole label set.",
    )
    a.add_argument("sdk_app_id", type=int, metavar="SDK_APP_ID")
    a.add_argument("task_id", metavar="TASK_ID")
    a.add_argument("--label", action="append", default=[], help="name=value (repeatable)")
    a.add_argument("--clear-labels", action="store_true", help="remove every label")
    a.add_argument(
        "--interval", help="poll interval, e.g. 30s or 1m30s; 'default' for the configured one"
    )
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("store", help="work on stores directly (the daemon need not run)")
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    a = ssub.add_parser(
        "copy",
        help="copy every task, transition and alert record from one store to another",
        description="Store URLs: sqlite:PATH, or redis://[:password@]host:port/db with an "
        "optional ?key_prefix=... (default trtc-monitor:); rediss:// and unix:// too.",
    )
    a.add_argument("--from", dest="source", required=True, metavar="URL", help="source store")
    a.add_argument("--to", dest="target", required=True, metavar="URL", help="target store")
    a.add_argument("--force", action="store_true", help="copy into a target that is not empty")
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser
