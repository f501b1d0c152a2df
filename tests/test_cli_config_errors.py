"""A configuration file with errors: every command that loads it prints each error on its own
``error:`` line and exits 2, with no traceback and nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main

# Two independent mistakes, so that the report lists both.
BAD = "polling:\n  interval: -5s\nnot_a_section: 1\n"


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(BAD)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["credentials"],
        ["describe", "--sdk-app-id", "1", "--task-id", "t", "--region", "ap-beijing"],
    ],
    ids=["run", "credentials", "describe"],
)
def test_each_error_of_the_file_is_one_line_and_the_exit_is_2(
    command: list[str], bad_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "-c", str(bad_config)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) >= 2, err
    assert all(line.startswith("error: ") for line in lines), err
    assert any("not_a_section" in line for line in lines), err
    assert any("interval" in line for line in lines), err
    assert "Traceback" not in err
    assert out == ""
