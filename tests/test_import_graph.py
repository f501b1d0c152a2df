"""The import graph of ``monitor/``: no module imports itself back round a circle, the layers
keep to their places (no HTTP module imports the daemon, the daemon holds no polling, callback
or alert logic, only the factories name a backend), and the daemon only composes.

A circle hides which part is below which, and Python breaks it only at run time (a
function-local import, a name not yet defined during a partial import). Imports under
``if TYPE_CHECKING:`` are skipped: they never run, and a route module naming the class whose
routes it adds (the simulator's control surface and its ``Simulator``) is no circle at run
time. Function-local imports count: they run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MONITOR = ROOT / "monitor"


def _module_names(root: Path) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = (
            test.id
            if isinstance(test, ast.Name)
            else test.attr
            if isinstance(test, ast.Attribute)
            else None
        )
        if name == "TYPE_CHECKING":
            for statement in node.body:
                skipped.update(id(n) for n in ast.walk(statement))
    return skipped


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports when it runs."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                # ``from package import submodule`` depends on the submodule; the package's
                # ``__init__`` runs first whatever is imported, which is no circle of the code.
                named = [f"{module}.{alias.name}" for alias in node.names]
                submodules = [n for n in named if n in modules]
                deps.update(submodules)
                if len(submodules) < len(named):
                    deps.add(module)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


class TestImportGraph:
    def test_no_module_under_monitor_is_part_of_an_import_circle(self) -> None:
        graph = import_graph(MONITOR)
        assert len(graph) > 100  # the walk did find the package
        assert circles(graph) == []

    def test_a_circle_closed_by_a_function_local_import_is_found(self, tmp_path: Path) -> None:
        root = _write(
            tmp_path,
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg.b import B\n",
                "pkg/b.py": "class B:\n    def f(self):\n        from pkg import a\n",
                "pkg/c.py": "from . import a\n",
            },
        )
        assert circles(import_graph(root)) == [["pkg.a", "pkg.b"]]

    def test_imports_only_for_type_checking_and_of_a_package_init_are_no_circle(
        self, tmp_path: Path
    ) -> None:
        root = _write(
            tmp_path,
            {
                "pkg/__init__.py": "from pkg.server import Server\n",
                "pkg/server.py": "from pkg import routes\nclass Server: ...\n",
                "pkg/routes.py": (
                    "from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from pkg.server import Server\n"
                ),
            },
        )
        graph = import_graph(root)
        assert graph["pkg.server"] == {"pkg.routes"}
        assert graph["pkg.routes"] == set()
        assert circles(graph) == []

    def test_the_daemon_does_not_reach_into_the_deadline_queue(self) -> None:
        graph = import_graph(MONITOR)
        assert "monitor.deadline_queue" in graph
        assert "monitor.deadline_queue" not in graph["monitor.daemon"]
        # Only the scheduler drives the queue.
        users = sorted(m for m, deps in graph.items() if "monitor.deadline_queue" in deps)
        assert users == ["monitor.scheduler"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _called(path: Path) -> set[str]:
    """Names of the functions and methods a module calls."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
            elif isinstance(node.func, ast.Name):
                names.add(node.func.id)
    return names


class TestLayers:
    def test_no_http_module_imports_the_daemon(self) -> None:
        offenders = {
            str(path.relative_to(MONITOR)): sorted(
                n
                for n in _imports(path)
                if n == "monitor.daemon" or n.startswith("monitor.daemon.")
            )
            for path in (MONITOR / "http").rglob("*.py")
        }
        assert {k: v for k, v in offenders.items() if v} == {}
        assert len(offenders) >= 5  # the walk did find the package

    def test_the_daemon_holds_no_polling_callback_or_alert_logic(self) -> None:
        path = MONITOR / "daemon.py"
        forbidden = (
            "monitor.status_rules",  # status and health rules
            "monitor.callbacks",  # signature, parsing, dedupe, effects
            "monitor.alerts.rules",  # alert conditions
            "monitor.scheduler",  # the deadline queue
            "monitor.trtc.signing",
        )
        used = _imports(path)
        assert sorted(n for n in used if n.startswith(forbidden)) == []
        # What polling, callbacks and alerting do, called from the daemon, would be their logic
        # living there.
        logic = {
            "describe_cloud_recording",
            "observe_poll",
            "observe_exit",
            "note_facts",
            "apply_poll",
            "apply_callback",
            "evaluate_task",
            "on_throttled",
            "reschedule",
            "retry",
            "record_transition",
        }
        assert sorted(_called(path) & logic) == []

    def test_only_the_factories_name_a_backend(self) -> None:
        named: dict[str, list[str]] = {}
        for path in MONITOR.rglob("*.py"):
            rel = str(path.relative_to(MONITOR))
            text = path.read_text()
            for backend in ("SqliteStore", "LocalRateLimiter"):
                if backend in text:
                    named.setdefault(backend, []).append(rel)
        assert sorted(named["SqliteStore"]) == [
            "store/__init__.py",
            "store/factory.py",
            "store/sqlite/__init__.py",
            "store/sqlite/store.py",
        ]
        assert sorted(named["LocalRateLimiter"]) == [
            "ratelimit/__init__.py",
            "ratelimit/factory.py",
            "ratelimit/local.py",
        ]


class TestModulesAReaderCanHold:
    def test_no_module_is_over_500_lines(self) -> None:
        long = {
            str(path.relative_to(MONITOR)): n
            for path in MONITOR.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 500
        }
        assert long == {}


class TestTheDaemonOnlyComposes:
    def test_the_daemon_is_at_most_300_lines(self) -> None:
        lines = (MONITOR / "daemon.py").read_text().splitlines()
        assert len(lines) <= 300

    def test_the_daemon_holds_no_lambda(self) -> None:
        # A lambda in the composition root is a late-binding reach back into another part
        # (``interval_of=lambda task: self.poller.intervals.of(task)``): parts are passed as
        # objects, built in an order that needs no back-reference.
        path = MONITOR / "daemon.py"
        tree = ast.parse(path.read_text(), str(path))
        lambdas = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Lambda)]
        assert lambdas == []

    def test_the_poll_step_neither_backs_off_nor_counts_itself(self) -> None:
        # The poll step announces its outcome; the budget backs off and the metrics count.
        called = _called(MONITOR / "poller.py")
        assert sorted(called & {"on_throttled", "observe", "inc", "labels"}) == []
        assert "monitor.metrics" not in import_graph(MONITOR)["monitor.poller"]
