"""Reading the YAML file into a ``Config``, every problem reported at its file:line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.config.errors import ConfigError
from monitor.config.locate import collect_lines, flatten, locate
from monitor.config.model import Config


def load_config(path: Path | str) -> Config:
    """Read and validate one configuration file; ConfigError lists every problem found."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a directory, not a configuration file"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot be read ({exc.strerror})"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not valid UTF-8 (byte {exc.start})"]) from None
    return parse_config(text, source)


# libyaml, when PyYAML was built with it: parsing 10,000 listed tasks took seconds in Python.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)


def _fast_parse(text: str) -> tuple[yaml.Node | None, Any] | None:
    """The document's node tree and data by libyaml; None when unavailable or when the text is
    not valid YAML (the Python parser then words the error, the same on every machine)."""
    if _FAST_LOADER is None:
        return None
    loader = _FAST_LOADER(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate configuration text; ``source`` prefixes every error message."""
    fast = _fast_parse(text)
    if fast is not None:
        node, data = fast
        return _validate(node, data, source)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    return _validate(node, data, source)


def _validate(node: yaml.Node | None, data: Any, source: str) -> Config:
    if node is None or data is None:
        raise ConfigError(
            [f"{source}: the file is empty (expected sections such as server, accounts, tasks)"]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{source}:{node.start_mark.line + 1}: the top level must be a mapping of "
                f"sections (server, storage, accounts, ...), not a {type(data).__name__}"
            ]
        )

    lines: dict[tuple[str | int, ...], int] = {}
    problems: list[tuple[int, str]] = []
    collect_lines(node, (), lines, problems, source, set())

    # Tasks check their account against the accounts section while it is validated, so an
    # unknown account is reported together with every other problem.
    accounts = data.get("accounts")
    # YAML types scalars by their look: a label written `room: 42` is text all the same.
    context: dict[str, Any] = {"yaml": True}
    if accounts is None:
        context["accounts"] = {"default"}
    elif isinstance(accounts, dict):
        context["accounts"] = {str(name) for name in accounts}
    config: Config | None = None
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        for loc, message in flatten(exc, Config):
            display, line = locate(loc, lines)
            where = f"{source}:{line}" if line else source
            problems.append((line or 0, f"{where}: {display or '(top level)'}: {message}"))
    if problems:
        problems.sort(key=lambda item: item[0])
        raise ConfigError(_dedupe(message for _, message in problems))
    assert config is not None
    config._source = source
    config._lines = lines
    return config


def _dedupe(messages: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(messages))
