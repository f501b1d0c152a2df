from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.durations import format_duration, parse_duration, parse_percent

UNITS_MS = {"y": 31_536_000_000, "w": 604_800_000, "d": 86_400_000, "h": 3_600_000}
UNITS_MS |= {"m": 60_000, "s": 1000, "ms": 1}


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("500ms", 0.5),
            ("15s", 15.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            ("1d", 86400.0),
            ("1w", 604800.0),
            ("1y", 365 * 86400.0),
            ("1h30m", 5400.0),
            ("1m500ms", 60.5),
            ("2d3h4m5s6ms", 2 * 86400 + 3 * 3600 + 4 * 60 + 5.006),
            ("90s", 90.0),
        ],
    )
    def test_prometheus_syntax_gives_seconds(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == pytest.approx(seconds)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "15",
            "15 seconds",
            "1.5s",
            "-5s",
            "s",
            "5x",
            "30m1h",  # units out of order
            "1h1h",
            "5 m",
            "1e3s",
            "15sec",
            "ms",
        ],
    )
    def test_garbage_is_rejected_with_the_text_and_the_expected_syntax(self, text: str) -> None:
        with pytest.raises(ValueError, match="Prometheus syntax") as info:
            parse_duration(text)
        assert f'"{text}"' in str(info.value)

    @pytest.mark.parametrize("text", ["0", "0s", "0ms", "0h0m"])
    def test_zero_is_rejected_unless_allowed(self, text: str) -> None:
        with pytest.raises(ValueError, match="greater than zero"):
            parse_duration(text)
        assert parse_duration(text, allow_zero=True) == 0.0

    def test_a_duration_beyond_int64_milliseconds_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="too long"):
            parse_duration("300000000y")

    def test_surrounding_whitespace_is_ignored(self) -> None:
        assert parse_duration(" 15s\n") == 15.0

    @given(
        st.fixed_dictionaries(
            {},
            optional={unit: st.integers(min_value=0, max_value=10_000) for unit in UNITS_MS},
        ).filter(lambda parts: any(parts.values()))
    )
    def test_any_ordered_combination_sums_its_parts(self, parts: dict[str, int]) -> None:
        text = "".join(f"{parts[unit]}{unit}" for unit in UNITS_MS if unit in parts)
        expected_ms = sum(count * UNITS_MS[unit] for unit, count in parts.items())
        assert parse_duration(text) == expected_ms / 1000


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (90, "1m30s"),
            (0.5, "500ms"),
            (0, "0s"),
            (15, "15s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (86400, "1d"),
            (7 * 86400, "1w"),
            (365 * 86400, "1y"),
            (60.001, "1m1ms"),
        ],
    )
    def test_gives_the_shortest_prometheus_form(self, seconds: float, text: str) -> None:
        assert format_duration(seconds) == text

    @pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
    def test_negative_and_non_finite_values_are_rejected(self, seconds: float) -> None:
        with pytest.raises(ValueError, match="cannot format"):
            format_duration(seconds)

    @given(st.integers(min_value=1, max_value=10**15))
    def test_parse_undoes_format_for_every_whole_number_of_milliseconds(self, ms: int) -> None:
        assert parse_duration(format_duration(ms / 1000)) == ms / 1000

    @given(
        st.fixed_dictionaries(
            {},
            optional={unit: st.integers(min_value=0, max_value=500) for unit in UNITS_MS},
        ).filter(lambda parts: any(parts.values()))
    )
    def test_format_of_a_parsed_text_is_canonical_and_stable(self, parts: dict[str, int]) -> None:
        text = "".join(f"{parts[unit]}{unit}" for unit in UNITS_MS if unit in parts)
        canonical = format_duration(parse_duration(text))
        assert parse_duration(canonical) == parse_duration(text)
        assert format_duration(parse_duration(canonical)) == canonical


class TestParsePercent:
    @pytest.mark.parametrize(
        ("value", "fraction"),
        [
            ("10%", 0.1),
            ("2.5%", 0.025),
            ("0%", 0.0),
            ("100%", 1.0),
            ("0.1", 0.1),
            (0.1, 0.1),
            (0, 0.0),
        ],
    )
    def test_percent_and_bare_fractions_are_accepted(
        self, value: str | float, fraction: float
    ) -> None:
        assert parse_percent(value) == pytest.approx(fraction)

    @pytest.mark.parametrize("value", ["ten", "10 percent", "-5%", "%", "", "1e2%", -0.1, True])
    def test_garbage_is_rejected(self, value: str | float) -> None:
        with pytest.raises(ValueError, match="percentage"):
            parse_percent(value)

    @given(st.integers(min_value=0, max_value=100_000))
    def test_whole_percentages_are_hundredths(self, percent: int) -> None:
        assert parse_percent(f"{percent}%") == pytest.approx(percent / 100)
