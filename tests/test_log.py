from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from monitor.log import (
    REDACTED,
    Redactor,
    configure_logging,
    get_logger,
    redact,
    set_secrets,
)

SECRET = "sk-9fQ2xLr7Vb3Nw8Tz"
TOKEN = "tok-A1b2C3d4E5f6"
# Would be in the output only if tracebacks showed local variables.
LOCAL_MARKER = "local-marker-5e7a1c"

FORMATS = ["json", "console"]


@pytest.fixture(autouse=True)
def isolated_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    set_secrets(())


def configure(
    format: str, level: str = "info", secrets: tuple[str, ...] = (SECRET, TOKEN)
) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(format, level, secrets, stream=stream)
    return stream


class CredentialError(Exception):
    pass


def fail_with_secret() -> None:
    secret_key = SECRET  # a local holding a secret: must never be printed
    marker = LOCAL_MARKER
    raise CredentialError(f"signature mismatch for key {secret_key} ({len(marker)})")


def fail_with_cause() -> None:
    try:
        raise KeyError(f"token {TOKEN} rejected")
    except KeyError as exc:
        raise RuntimeError("request failed") from exc


class TestRedaction:
    @pytest.mark.parametrize("format", FORMATS)
    def test_a_secret_in_a_structlog_message_and_nested_values_is_redacted(
        self, format: str
    ) -> None:
        stream = configure(format)
        get_logger("test").info(
            f"signing with {SECRET}",
            request={"headers": {"X-TC-Token": TOKEN}, "attempts": [f"a {SECRET} b", 3]},
            pair=(SECRET, 1),
            **{f"key_{SECRET}": "v"},
        )
        out = stream.getvalue()
        assert SECRET not in out
        assert TOKEN not in out
        assert out.count(REDACTED) >= 5
        assert "signing with" in out

    @pytest.mark.parametrize("format", FORMATS)
    def test_a_secret_in_a_stdlib_message_and_its_arguments_is_redacted(self, format: str) -> None:
        stream = configure(format)
        logging.getLogger("aiohttp.client").warning("auth %s failed for %r", SECRET, {"t": TOKEN})
        out = stream.getvalue()
        assert SECRET not in out
        assert TOKEN not in out
        assert "auth [REDACTED] failed" in out

    @pytest.mark.parametrize("format", FORMATS)
    def test_a_secret_in_an_exception_and_its_traceback_is_redacted_without_locals(
        self, format: str
    ) -> None:
        stream = configure(format)
        log = get_logger("poller")
        try:
            fail_with_secret()
        except CredentialError:
            log.exception("poll failed", task="1400000001/abc")
        try:
            fail_with_secret()
        except CredentialError:
            logging.getLogger("stdlib.poller").exception("stdlib poll failed")
        out = stream.getvalue()
        assert SECRET not in out
        assert LOCAL_MARKER not in out
        assert out.count(f"signature mismatch for key {REDACTED}") == 2
        assert out.count("fail_with_secret") >= 2  # the traceback itself is there
        assert "CredentialError" in out

    @pytest.mark.parametrize("format", FORMATS)
    def test_a_secret_in_a_chained_exception_is_redacted(self, format: str) -> None:
        stream = configure(format)
        try:
            fail_with_cause()
        except RuntimeError:
            get_logger("x").exception("call failed")
        out = stream.getvalue()
        assert TOKEN not in out
        assert f"token {REDACTED} rejected" in out
        assert "request failed" in out

    def test_json_exceptions_carry_no_locals(self) -> None:
        stream = configure("json")
        try:
            fail_with_secret()
        except CredentialError:
            get_logger("x").exception("failed")
        (event,) = [json.loads(line) for line in stream.getvalue().splitlines()]
        frames = [frame for exc in event["exception"] for frame in exc["frames"]]
        assert [f["name"] for f in frames][-1] == "fail_with_secret"
        assert all("locals" not in frame for frame in frames)

    @pytest.mark.parametrize("format", FORMATS)
    def test_an_object_whose_repr_holds_a_secret_is_redacted(self, format: str) -> None:
        class Holder:
            def __repr__(self) -> str:
                return f"Holder({SECRET})"

        stream = configure(format)
        get_logger("x").info("holding", holder=Holder(), error=ValueError(SECRET))
        out = stream.getvalue()
        assert SECRET not in out
        assert f"Holder({REDACTED})" in out

    def test_short_secrets_are_ignored_so_logs_stay_readable(self) -> None:
        stream = configure("json", secrets=("abc", SECRET))
        get_logger("x").info("abc and abcd", key=SECRET)
        (event,) = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert event["event"] == "abc and abcd"
        assert event["key"] == REDACTED

    def test_a_secret_containing_another_is_hidden_whole(self) -> None:
        redactor = Redactor(["pass", "password123"])
        assert redactor.redact("password123 / pass") == f"{REDACTED} / {REDACTED}"

    def test_set_secrets_replaces_the_redaction_set_of_configured_loggers(self) -> None:
        stream = configure("json", secrets=(SECRET,))
        log = get_logger("x")
        set_secrets([TOKEN])
        log.info(f"{SECRET} {TOKEN}")
        logging.getLogger("std").info("%s", TOKEN)
        out = stream.getvalue()
        assert TOKEN not in out
        assert SECRET in out  # no longer configured: reload dropped it
        assert redact(f"x{TOKEN}x") == f"x{REDACTED}x"

    def test_without_secrets_values_pass_through_untouched(self) -> None:
        assert Redactor().redact({"a": [1, "b"]}) == {"a": [1, "b"]}


class TestRendering:
    def test_json_is_one_object_per_line_with_timestamp_level_event_and_logger(self) -> None:
        stream = configure("json")
        get_logger("monitor.scheduler").info("tick", due=3)
        logging.getLogger("aiohttp.access").warning("GET /metrics 200")
        first, second = (json.loads(line) for line in stream.getvalue().splitlines())
        assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
        assert (first["level"], first["logger"], first["event"], first["due"]) == (
            "info",
            "monitor.scheduler",
            "tick",
            3,
        )
        assert (second["level"], second["logger"], second["event"]) == (
            "warning",
            "aiohttp.access",
            "GET /metrics 200",
        )
        stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() is not None

    def test_console_is_plain_text_without_colours_on_a_non_terminal(self) -> None:
        stream = configure("console")
        get_logger("monitor.x").info("started", port=9877)
        out = stream.getvalue()
        assert "started" in out
        assert "port=9877" in out
        assert "\x1b[" not in out

    @pytest.mark.parametrize("format", FORMATS)
    def test_the_level_filters_structlog_and_stdlib_alike(self, format: str) -> None:
        stream = configure(format, level="warning")
        get_logger("x").info("quiet-structlog")
        logging.getLogger("y").info("quiet-stdlib")
        get_logger("x").warning("loud-structlog")
        logging.getLogger("y").error("loud-stdlib")
        out = stream.getvalue()
        assert "quiet" not in out
        assert "loud-structlog" in out
        assert "loud-stdlib" in out

    def test_configuring_twice_replaces_the_handler(self) -> None:
        first = configure("json")
        second = configure("console", level="debug")
        get_logger("x").debug("once")
        logging.getLogger("y").debug("twice")
        assert first.getvalue() == ""
        assert second.getvalue().count("once") == 1
        assert second.getvalue().count("twice") == 1

    def test_output_goes_to_stderr_by_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("json", "info", [SECRET])
        get_logger("x").info("to stderr", key=SECRET)
        captured = capsys.readouterr()
        assert captured.out == ""
        assert '"event": "to stderr"' in captured.err
        assert SECRET not in captured.err

    @pytest.mark.parametrize(("format", "level"), [("xml", "info"), ("json", "verbose")])
    def test_unknown_format_or_level_is_rejected(self, format: str, level: str) -> None:
        with pytest.raises(ValueError, match="unknown log"):
            configure_logging(format, level)
