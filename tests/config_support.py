"""Shared by the configuration tests: the shipped files, secret-looking values, and helpers
that write a file or collect the errors of a text."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest

from monitor.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "monitor.example.yaml"
DEMO = ROOT / "config" / "demo.yaml"

SECRET_KEY = "sk-Zq8v1TfYb7Wl0pXr"
SECRET_ID = "AKIDexample0000000000"


def write(tmp_path: Path, text: str, name: str = "monitor.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(text: str, source: str = "x.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).lstrip("\n"), source)
    return info.value.errors


def model_fields(model: type[pydantic.BaseModel]) -> set[str]:
    """Every field name of ``model`` and of the models nested in it."""
    names: set[str] = set()
    pending: list[Any] = [model]
    while pending:
        tp = pending.pop()
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            for name, info in tp.model_fields.items():
                names.add(name)
                pending.append(info.annotation)
        else:
            pending.extend(typing.get_args(tp))
    return names
