"""Where a problem is in the file: the line of each key path, and pydantic's errors worded
for people (with "did you mean" hints).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from monitor.config.alerts import ROBOT_TYPES
from monitor.config.errors import LocatedErrors
from monitor.taskspec import LabelError


def collect_lines(
    node: yaml.Node,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    problems: list[tuple[int, str]],
    source: str,
    walked: set[int],
) -> None:
    if path not in lines:
        lines[path] = node.start_mark.line + 1
    # An alias shares its anchor's node: walk it once, or nested aliases (and recursive ones)
    # would make this walk exponential. Keys under an alias map to the alias's own line.
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                display = _display((*path, key))
                problems.append((line, f"{source}:{line}: {display}: duplicate key"))
            seen.add(key)
            lines[(*path, key)] = line
            collect_lines(value_node, (*path, key), lines, problems, source, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            collect_lines(item, (*path, index), lines, problems, source, walked)


def _display(loc: tuple[str | int, ...]) -> str:
    out = ""
    for comp in loc:
        if isinstance(comp, int):
            out += f"[{comp}]"
        else:
            out += f".{comp}" if out else str(comp)
    return out


_RECEIVER_TYPES = frozenset({"alertmanager", "webhook", *ROBOT_TYPES})


def locate(
    loc: tuple[str | int, ...], lines: Mapping[tuple[str | int, ...], int]
) -> tuple[str, int | None]:
    """(displayed key path, line of the closest key present in the file) for a pydantic loc."""
    known: tuple[str | int, ...] = ()
    shown: list[str | int] = []
    for comp in loc:
        if comp == "[key]":
            continue
        # The tag of a discriminated union is part of pydantic's loc, not of the file.
        if (
            comp in _RECEIVER_TYPES
            and len(shown) >= 2
            and shown[-2] == "receivers"
            and isinstance(shown[-1], int)
        ):
            continue
        if len(known) == len(shown):
            # Mapping keys are recorded as text: an int here may be a key such as `1:`.
            for candidate in ((*known, comp), (*known, str(comp))):
                if candidate in lines:
                    known = candidate
                    comp = candidate[-1]
                    break
        shown.append(comp)
    return _display(tuple(shown)), lines.get(known)


def flatten(
    exc: ValidationError, root: type[BaseModel]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(key path, message) for each of pydantic's errors; ``root`` is the validated model."""
    errors = exc.errors()
    locs = [tuple(error["loc"]) for error in errors]
    for error in errors:
        loc = tuple(error["loc"])
        # A list whose only item was rejected is also "too short": the item's error says it all.
        if error["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in locs
        ):
            continue
        ctx = error.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, LocatedErrors):
            for sub, message in cause.problems:
                yield (*loc, *sub), message
            continue
        if isinstance(cause, LabelError):
            yield (*loc, cause.name), str(cause)
            continue
        yield loc, _message(error, loc, root)


def _message(error: Any, loc: tuple[str | int, ...], root: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if allowed else []
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), Exception):
        return str(ctx["error"])
    if kind == "union_tag_invalid":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        tag, expected = ctx.get("tag"), ctx.get("expected_tags")
        return f'unknown {discriminator} "{tag}" (one of {expected})'
    if kind == "union_tag_not_found":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        return f"required key {discriminator} is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "expected a mapping (key: value)"
    if kind in ("tuple_type", "list_type"):
        return "expected a list"
    return str(error["msg"])


def _allowed_keys(root: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model found at ``loc`` (for "did you mean" hints)."""
    current: Any = root
    for comp in loc:
        current = _child_type(current, comp)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _child_type(tp: Any, comp: str | int) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(comp))
        return None if info is None else info.annotation
    origin = typing.get_origin(tp)
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin in (tuple, list):
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(tp):
            member = _unwrap(member)
            if isinstance(member, type) and issubclass(member, BaseModel):
                tag = member.model_fields.get("type")
                if tag is not None and comp in typing.get_args(tag.annotation):
                    return member
    return None
