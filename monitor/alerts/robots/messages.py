"""What a person reads in the chat: alert notices turned into text, and texts packed into
messages that fit a platform's size limit. Pure.

The facts a reader needs (room, from/to status, leave or error code, request id) are the
alert's labels and the facts its description states; the description is written by
``monitor.alerts.rules`` in fixed phrases, which are read back here (a test renders real
rule output, so a rewording there fails loudly here).

Every value that comes from outside (labels, task ids, descriptions) is escaped for the
platform's markup: a room called ``*[x](http://evil)*`` shows as those characters, never as a
link, and a line break in a label cannot start a heading or a list.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from monitor.alerts.kinds import TASK_EXITED, TASK_NOT_FOUND
from monitor.alerts.payloads import Notice, generator_url
from monitor.alerts.texts import LEAVE_CODES, NOT_FOUND_HINT
from monitor.models import Outcome
from monitor.trtc.errors import classify_code

FIRING: Final = "FIRING"
RESOLVED: Final = "RESOLVED"
# Shown before the status everywhere, so firing and resolved read differently at a glance.
MARK: Final = {FIRING: "\U0001f534", RESOLVED: "\u2705"}

_FROM_TO = re.compile(r"went from (\w+) to (\w+)")
_IS_SINCE = re.compile(r" is (\w+) since ")
_LEAVE = re.compile(r"leave code (-?\d+)")
_ERROR = re.compile(r"error code ([A-Za-z][A-Za-z0-9_.]*)")
_REQUEST_ID = re.compile(r"request id ([A-Za-z0-9-]+)")

_OUTCOME_MEANING: Final = {
    Outcome.ENDED: "the task no longer exists",
    Outcome.THROTTLED: "the API throttled the request",
    Outcome.TRANSIENT: "a temporary error on Tencent Cloud's side",
    Outcome.AUTH: "the credentials were rejected",
    Outcome.INVALID: "the request was refused as invalid",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """One alert as the message shows it: plain strings, "" when unknown."""

    status: str  # FIRING or RESOLVED
    alertname: str
    severity: str
    summary: str
    description: str
    task: str
    room: str
    from_status: str
    to_status: str
    code: str  # "leave code 3" or "error code InternalError"
    meaning: str  # what the code means
    request_id: str
    starts_at: str
    ends_at: str
    link: str

    def fields(self) -> dict[str, str]:
        """Template fields (``config.TEMPLATE_FIELDS``)."""
        return {name: getattr(self, name) for name in self.__slots__}


def when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def facts_of(notice: Notice, external_url: str = "") -> Facts:
    labels = notice.labels
    description = notice.annotations.get("description", "")
    from_status = to_status = ""
    if m := _FROM_TO.search(description):
        from_status, to_status = m.group(1), m.group(2)
    elif notice.alertname in (TASK_EXITED, TASK_NOT_FOUND) and (m := _IS_SINCE.search(description)):
        to_status = m.group(1)
    code = meaning = ""
    if m := _LEAVE.search(description):
        number = int(m.group(1))
        code = f"leave code {number}"
        meaning = LEAVE_CODES.get(number, "undocumented leave code")
    # A code may end a sentence: its own dots are inside it ("AuthFailure.SignatureFailure").
    error = m.group(1).rstrip(".") if (m := _ERROR.search(description)) else ""
    if error and error != "unknown":
        code = f"{code}, error code {error}" if code else f"error code {error}"
        meaning = meaning or _OUTCOME_MEANING.get(classify_code(error), "")
    if notice.alertname == TASK_NOT_FOUND:
        meaning = NOT_FOUND_HINT  # not "no longer exists": it was never seen to exist
    m = _REQUEST_ID.search(description)
    task = ""
    if "task_id" in labels:
        where = ", ".join(v for v in (labels.get("sdk_app_id"), labels.get("region")) if v)
        task = f"{labels['task_id']} ({where})" if where else labels["task_id"]
    elif "account" in labels:
        task = f"account {labels['account']}"
    return Facts(
        status=FIRING if notice.firing else RESOLVED,
        alertname=notice.alertname,
        severity=labels.get("severity", ""),
        summary=notice.annotations.get("summary", ""),
        description=description,
        task=task,
        room=labels.get("room", ""),
        from_status=from_status,
        to_status=to_status,
        code=code,
        meaning=meaning,
        request_id=m.group(1) if m else "",
        starts_at=when(notice.starts_at),
        ends_at="" if notice.firing or notice.ends_at is None else when(notice.ends_at),
        link=generator_url(external_url, notice),
    )


# --- markup ------------------------------------------------------------------------------------

# Characters that mark text up anywhere in a line in the markdown of WeCom and DingTalk robots
# (CommonMark-like, with a little HTML): escaped with a backslash. Without "[" no link or image
# can form, so "(", ")" and "!" stay as they are; "<" and ">" become entities so no tag can.
_MD_INLINE = re.compile(r"([\\`*_\[\]~|])")
# These mark text up only at the start of a line (headings, quotes, lists, rules).
_MD_LINE_START = re.compile(r"^([#>+=-]|\d+\.)")


def _one_line(text: str) -> str:
    # Control characters (line breaks included) would start new markdown blocks.
    return "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)


def markdown_escape(text: str) -> str:
    text = _MD_LINE_START.sub(r"\\\1", _MD_INLINE.sub(r"\\\1", _one_line(text)))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str) -> str:
    """For platforms where values go into plain-text elements: nothing is markup there."""
    return _one_line(text)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a platform marks text up."""

    escape: Callable[[str], str]
    bold: Callable[[str], str]
    # Markdown platforms carry the link in the text; the others as a button.
    link_in_text: bool
    # Between the lines of one alert (DingTalk needs a blank line for a line break).
    newline: str = "\n"


MARKDOWN: Final = Dialect(
    escape=markdown_escape, bold=lambda s: f"**{s}**", link_in_text=True, newline="\n"
)
DINGTALK_MARKDOWN: Final = Dialect(
    escape=markdown_escape, bold=lambda s: f"**{s}**", link_in_text=True, newline="\n\n"
)
PLAIN: Final = Dialect(escape=plain, bold=lambda s: s, link_in_text=False, newline="\n")


@dataclass(frozen=True, slots=True)
class Block:
    """One alert's part of a message: text in the platform's markup, and its link."""

    text: str
    link: str
    firing: bool


def render_block(facts: Facts, dialect: Dialect, template: str | None = None) -> Block:
    esc = dialect.escape
    if template is not None:
        values = {k: esc(v) for k, v in facts.fields().items()}
        text = string.Template(template).safe_substitute(values)
        return Block(text, facts.link, facts.status == FIRING)
    head = f"{MARK[facts.status]} {dialect.bold(esc(facts.alertname))} · {esc(facts.status)}"
    if facts.severity:
        head += f" · {esc(facts.severity)}"
    lines = [head]
    if facts.summary:
        lines.append(esc(facts.summary))
    rows: list[tuple[str, str]] = [
        ("Task", facts.task),
        ("Room", facts.room),
    ]
    if facts.from_status or facts.to_status:
        rows.append(("Status", f"{facts.from_status or '?'} → {facts.to_status or '?'}"))
    if facts.code:
        rows.append(("Code", f"{facts.code}: {facts.meaning}" if facts.meaning else facts.code))
    rows += [
        ("Request id", facts.request_id),
        ("Started", facts.starts_at),
        ("Resolved", facts.ends_at),
    ]
    lines.extend(f"{dialect.bold(name)}: {esc(value)}" for name, value in rows if value)
    if facts.link and dialect.link_in_text:
        # Our own URL (external_url and a quoted task id): not user text, but ( ) would still
        # end the link early.
        url = facts.link.replace("(", "%28").replace(")", "%29")
        lines.append(f"[Open in monitor]({url})")
    return Block(dialect.newline.join(lines), facts.link, facts.status == FIRING)


def title_of(blocks: Sequence[Block], names: Sequence[str]) -> str:
    """``🔴 FIRING 3: RecordingTaskExited x2, RecordingTaskIdle`` (plain text)."""
    firing = sum(1 for b in blocks if b.firing)
    resolved = len(blocks) - firing
    parts = []
    if firing:
        parts.append(f"{MARK[FIRING]} {FIRING} {firing}")
    if resolved:
        parts.append(f"{MARK[RESOLVED]} {RESOLVED} {resolved}")
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    shown = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(counts.items()))
    return f"{' '.join(parts)}: {shown}"


# --- fitting into the size limit ----------------------------------------------------------------

T = TypeVar("T")
ELLIPSIS: Final = " …"


def pack(items: Sequence[T], fits: Callable[[Sequence[T]], bool]) -> list[list[T]]:
    """Consecutive runs of ``items``, each as long as ``fits`` allows. An item that does not
    fit even alone gets a run of its own (the caller shortens it)."""
    runs: list[list[T]] = []
    current: list[T] = []
    for item in items:
        if current and not fits([*current, item]):
            runs.append(current)
            current = []
        current.append(item)
    if current:
        runs.append(current)
    return runs


_PARTIAL_ESCAPE = re.compile(r"(\\|&[a-z#0-9]*)$")


def shorten(block: Block, fits: Callable[[Block], bool]) -> Block:
    """Cut the block's text until ``fits`` it (at a character, never inside an escape)."""
    text = block.text
    while text and not fits(Block(text + ELLIPSIS, block.link, block.firing)):
        text = _PARTIAL_ESCAPE.sub("", text[: len(text) * 3 // 4])
    return Block(text + ELLIPSIS, block.link, block.firing)


def utf8_len(text: str) -> int:
    return len(text.encode())


def notices_by_fingerprint(notices: Sequence[Notice]) -> list[tuple[Notice, list[Notice]]]:
    """One entry per alert, in first-seen order: the newest notice (what the message says)
    and every notice it stands for (an alert that fired and resolved within the group window
    is shown resolved, once)."""
    order: dict[str, list[Notice]] = {}
    for n in notices:
        order.setdefault(n.fingerprint, []).append(n)
    return [(members[-1], members) for members in order.values()]
