"""The exposition writer: the state series written straight as text, spliced into the rest.

The per-task series and the fleet counts are written straight as exposition text
(``task_series_text``): building them as prometheus_client families costs a label check, a
dictionary and a sort per sample, which at 10,000 tasks is most of a scrape. The rest (the
instrumentation registry and the limiter gauges) goes through prometheus_client's own encoders,
and the fast text is spliced in before OpenMetrics' closing ``# EOF``. The family-based path of
:mod:`monitor.metrics.state` (``reference_families``) is kept: tests hold the fast text to it,
and the scale bench compares both.
"""

from collections import Counter as TallyCounter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_exposition
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.exposition import (
    UNDERSCORES,
    escape_label_name,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor.metrics.state import (
    ALL_STATUSES,
    COUNT_FAMILY,
    ERRORS_FAMILY,
    FILES_FAMILY,
    HELP,
    INFO_FAMILY,
    INFO_OWN_LABELS,
    SINCE_FAMILY,
    STATUS_FAMILY,
    SUCCESS_FAMILY,
    TASK_LABELS,
    UPLOAD_FAMILY,
    StateCollector,
    StateView,
    fleet_tasks,
    info_label_names,
    limiter_families,
)
from monitor.models import Status, Task
from monitor.uploads import UPLOAD_PHASES, UploadPhase

_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def escape_label_value(value: str) -> str:
    """A label value as both text formats quote it: backslash, newline and double quote escaped."""
    # Nearly every value needs nothing, and three scans cost less than translate's general path.
    if "\\" in value or '"' in value or "\n" in value:
        return value.translate(_VALUE_ESCAPES)
    return value


# Values as prometheus_client spells them ("1.0", "1.7e+09"); counts are mostly small.
_go_float: Callable[[float], str] = floatToGoString
_ONE = _go_float(1.0)
_ZERO = _go_float(0.0)
_SMALL_COUNTS = tuple(_go_float(float(n)) for n in range(1024))


def _count_text(n: int) -> str:
    if type(n) is int and 0 <= n < 1024:
        return _SMALL_COUNTS[n]
    return _go_float(float(n))


@dataclass(frozen=True, slots=True)
class Syntax:
    """How one scrape is spelt: the text format (0.0.4 or 1.0.0) or OpenMetrics, and the label
    name escaping the scraper asked for."""

    openmetrics: bool = False
    escaping: str = UNDERSCORES

    def header(self, family: str) -> str:
        # Every family written directly is a gauge, which both formats name without suffixes.
        help_text = HELP[family].replace("\\", r"\\").replace("\n", r"\n")
        if self.openmetrics:
            help_text = help_text.replace('"', r"\"")
        return f"# HELP {family} {help_text}\n# TYPE {family} gauge\n"

    def label(self, name: str) -> str:
        return escape_label_name(name, self.escaping)


# The escapings that leave the family names here (legal legacy names) as they are; a scraper
# asking for another one gets the reference path.
_NAME_PRESERVING = frozenset({UNDERSCORES, om_exposition.ALLOWUTF8})


def syntax_of(encoder: Callable[[Collector], bytes]) -> Syntax | None:
    """The syntax an encoder from ``choose_encoder`` writes; None if the fast text cannot match
    it."""
    if encoder is text_exposition.generate_latest:
        return Syntax()
    if not isinstance(encoder, partial):
        return None
    escaping = encoder.keywords.get("escaping", UNDERSCORES)
    if escaping not in _NAME_PRESERVING:
        return None
    if encoder.func is text_exposition.generate_latest:
        return Syntax(openmetrics=False, escaping=escaping)
    if encoder.func is om_exposition.generate_latest:
        return Syntax(openmetrics=True, escaping=escaping)
    return None


def task_series_text(view: StateView, syntax: Syntax) -> str:
    """The per-task series (if enabled) and the fleet counts, as ``reference_families`` would be
    encoded in ``syntax`` (labels in the encoders' sorted order), without ``# EOF``."""
    out: list[str] = []
    if view.per_task:
        _write_task_series(view, syntax, out)
    if view.export_fleet:
        _write_counts(view, syntax, out)
    return "".join(out)


# The info series' own labels, in the order of a task's escaped values in ``task_lines``.
_OWN_INFO: tuple[str, ...] = (*TASK_LABELS, *INFO_OWN_LABELS)


@dataclass(frozen=True, slots=True)
class SeriesLayout:
    """Everything a task's series text depends on besides the task: the label names as the
    scrape spells them, and the info labels. Equal layouts write equal text for a task."""

    account: str
    region: str
    app: str
    task_id: str
    status_mids: tuple[tuple[Status, str], ...]
    upload_mids: tuple[tuple[UploadPhase, str], ...]
    info_names: tuple[str, ...]
    # The encoders sort label names: the user's fall between the task's own. An int slot is an
    # index into the task's own escaped values, a str slot a user label name.
    info_slots: tuple[tuple[str, int | str], ...]


def series_layout(view: StateView, syntax: Syntax) -> SeriesLayout:
    esc = escape_label_value
    status = syntax.label("status")
    state = syntax.label("state")
    info_names = tuple(info_label_names(view))
    return SeriesLayout(
        account=syntax.label("account"),
        region=syntax.label("region"),
        app=syntax.label("sdk_app_id"),
        task_id=syntax.label("task_id"),
        status_mids=tuple((s, f',{status}="{esc(s.value)}",') for s in ALL_STATUSES),
        upload_mids=tuple((p, f',{state}="{esc(p.value)}",') for p in UPLOAD_PHASES),
        info_names=info_names,
        info_slots=tuple(
            (syntax.label(n), _OWN_INFO.index(n) if n in _OWN_INFO else n)
            for n in sorted((*_OWN_INFO, *info_names))
        ),
    )


# The per-task families, in the order they are written; ``task_lines`` answers in this order.
TASK_FAMILIES: tuple[str, ...] = (
    STATUS_FAMILY,
    INFO_FAMILY,
    SINCE_FAMILY,
    SUCCESS_FAMILY,
    ERRORS_FAMILY,
    FILES_FAMILY,
    UPLOAD_FAMILY,
)
_STATUS_OPEN = STATUS_FAMILY + "{"
_INFO_OPEN = INFO_FAMILY + "{"
_SINCE_OPEN = SINCE_FAMILY + "{"
_SUCCESS_OPEN = SUCCESS_FAMILY + "{"
_ERRORS_OPEN = ERRORS_FAMILY + "{"
_FILES_OPEN = FILES_FAMILY + "{"
_UPLOAD_OPEN = UPLOAD_FAMILY + "{"

TaskLines = tuple[str, str, str, str, str, str, str]


def task_lines(task: Task, layout: SeriesLayout) -> TaskLines:
    """One task's lines of each family of ``TASK_FAMILIES`` ("" where it has no sample)."""
    esc = escape_label_value
    own = (
        esc(task.account),
        esc(task.region),
        esc(str(task.sdk_app_id)),
        esc(task.task_id),
        task.kind.value,
        esc(task.recorder_key or ""),
    )
    head = f'{layout.account}="{own[0]}",{layout.region}="{own[1]}",{layout.app}="{own[2]}"'
    tail = f'{layout.task_id}="{own[3]}"}} '
    ids = f"{head},{tail}"
    current = task.status
    phase = task.upload.state
    statuses = "".join(
        f"{_STATUS_OPEN}{head}{mid}{tail}{_ONE if s is current else _ZERO}\n"
        for s, mid in layout.status_mids
    )
    labels = task.labels
    pairs = ",".join(
        f'{name}="{own[slot] if isinstance(slot, int) else esc(labels.get(slot, ""))}"'
        for name, slot in layout.info_slots
    )
    info = f"{_INFO_OPEN}{pairs}}} {_ONE}\n"
    return (
        statuses,
        info,
        f"{_SINCE_OPEN}{ids}{_go_float(task.status_since)}\n",
        ""
        if task.last_success_at is None
        else f"{_SUCCESS_OPEN}{ids}{_go_float(task.last_success_at)}\n",
        f"{_ERRORS_OPEN}{ids}{_count_text(task.consecutive_errors)}\n",
        ""
        if task.storage_files is None
        else f"{_FILES_OPEN}{ids}{_count_text(task.storage_files)}\n",
        "".join(
            f"{_UPLOAD_OPEN}{head}{mid}{tail}{_ONE if p is phase else _ZERO}\n"
            for p, mid in layout.upload_mids
        ),
    )


def _write_task_series(view: StateView, syntax: Syntax, out: list[str]) -> None:
    layout = series_layout(view, syntax)
    columns = tuple(zip(*(task_lines(task, layout) for task in view.tasks), strict=True))
    for i, family in enumerate(TASK_FAMILIES):
        out.append(syntax.header(family))
        if columns:
            out.append("".join(columns[i]))


def count_lines(counts: Mapping[tuple[str, str, Status], int], syntax: Syntax) -> str:
    """The fleet counts family (header included) from tasks tallied by account, region and
    status."""
    esc = escape_label_value
    account, region, status = map(syntax.label, ("account", "region", "status"))
    out = [syntax.header(COUNT_FAMILY)]
    for acc, reg in sorted({(a, r) for a, r, _ in counts}):
        prefix = f'{COUNT_FAMILY}{{{account}="{esc(acc)}",{region}="{esc(reg)}",{status}="'
        for s in ALL_STATUSES:
            out.append(f'{prefix}{esc(s.value)}"}} {_count_text(counts.get((acc, reg, s), 0))}\n')
    return "".join(out)


def _write_counts(view: StateView, syntax: Syntax, out: list[str]) -> None:
    counts: TallyCounter[tuple[str, str, Status]] = TallyCounter(
        (t.account, t.region, t.status) for t in fleet_tasks(view)
    )
    out.append(count_lines(counts, syntax))


# ---------------------------------------------------------------------------------------------
# the whole exposition


def _without_created(metric: Metric) -> Metric:
    """The family without its ``_created`` samples.

    prometheus_client adds one per counter and histogram child; the text format turns them into
    separate gauges that are not part of the metric contract and double the instrumentation
    series Prometheus stores.
    """
    created = f"{metric.name}_created"
    if not any(sample.name == created for sample in metric.samples):
        return metric
    copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    copy.samples = [sample for sample in metric.samples if sample.name != created]
    return copy


class _Exposition(Collector):
    """The instrumentation registry (if any) followed by some state families."""

    def __init__(
        self, registry: CollectorRegistry | None, state: Callable[[], Iterable[Metric]]
    ) -> None:
        self._registry = registry
        self._state = state

    def collect(self) -> Iterable[Metric]:
        if self._registry is not None:
            for metric in self._registry.collect():
                yield _without_created(metric)
        yield from self._state()


_EOF = b"# EOF\n"


def render(registry: CollectorRegistry, view: StateView, accept: str | None) -> tuple[bytes, str]:
    """Encode everything for one scrape; safe to run in a worker thread.

    The same bytes as ``render_reference`` whenever every label value is valid Unicode; a
    lone surrogate (which JSON lets in) becomes "?" here instead of failing the scrape.
    """
    encoder, content_type = choose_encoder(accept or "")
    syntax = syntax_of(encoder)
    if syntax is None:
        return render_reference(registry, view, accept)
    head, tail = encode_around(registry, view, encoder, syntax)
    fast = task_series_text(view, syntax).encode("utf-8", "replace")
    return b"".join((head, fast, tail)), content_type


def encode_around(
    registry: CollectorRegistry,
    view: StateView,
    encoder: Callable[[Collector], bytes],
    syntax: Syntax,
) -> tuple[bytes, bytes]:
    """What goes before the text written directly (the instrumentation) and after it (the
    limiter gauges, and OpenMetrics' ``# EOF``), as ``encoder`` writes them."""
    head = encoder(_Exposition(registry, lambda: ()))
    tail = encoder(_Exposition(None, lambda: limiter_families(view)))
    if syntax.openmetrics:
        # Both parts end with "# EOF", which must come once, last.
        head = head.removesuffix(_EOF)
    return head, tail


def render_reference(
    registry: CollectorRegistry, view: StateView, accept: str | None
) -> tuple[bytes, str]:
    """The exposition with every state family built by prometheus_client (the slow path)."""
    encoder, content_type = choose_encoder(accept or "")
    state = StateCollector(view)
    return encoder(_Exposition(registry, state.collect)), content_type
