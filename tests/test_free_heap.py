"""After a start has loaded the table, the C heap's free pages are given back to the system;
where the C library cannot, nothing fails."""

from __future__ import annotations

import ctypes

import pytest

from monitor import wiring


class TestReleaseFreeHeap:
    def test_glibc_gives_free_pages_back(self) -> None:
        assert wiring.release_free_heap() is True

    def test_a_c_library_without_malloc_trim_is_left_alone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        class NoTrim:
            def __init__(self, name: object) -> None:
                pass

        monkeypatch.setattr(ctypes, "CDLL", NoTrim)
        assert wiring.release_free_heap() is False

    def test_a_start_releases_once_its_objects_are_in_place(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []
        monkeypatch.setattr(wiring, "release_free_heap", lambda: calls.append("released"))
        with wiring.collector_off_then_frozen():
            calls.append("started")
        assert calls == ["started", "released"]

    def test_a_failed_start_does_not(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []
        monkeypatch.setattr(wiring, "release_free_heap", lambda: calls.append("released"))
        with pytest.raises(RuntimeError), wiring.collector_off_then_frozen():
            raise RuntimeError("store unusable")
        assert calls == []
