"""What a callback tells about its task: the facts (files merged across events), labels and
exit detail."""

from __future__ import annotations

from typing import Any

from monitor.callbacks.effects import task_facts
from monitor.callbacks.parse import MAX_FILES, Callback
from tests.callbacks_support import body, parsed


class TestTaskFacts:
    def test_mp4_files_of_successive_310s_are_merged_by_file_name(self) -> None:
        def mp4(*names: str) -> Callback:
            files = [{"FileName": n, "UserId": "u", "TrackType": "audio_video"} for n in names]
            return parsed(body(310, payload={"Status": 0, "FileMessage": files}))

        first = task_facts(mp4("a.mp4", "b.mp4"), {})
        assert first is not None
        second = task_facts(mp4("b.mp4", "c.mp4"), first)
        assert second is not None
        assert [f["FileName"] for f in second["mp4_files"]] == ["a.mp4", "b.mp4", "c.mp4"]
        assert second["mp4_status"] == 0

    def test_the_kept_file_list_is_bounded(self) -> None:
        names = [f"f{i}.mp4" for i in range(MAX_FILES + 50)]
        facts: dict[str, Any] = {}
        for chunk in (names[:MAX_FILES], names[MAX_FILES:]):
            files = [{"FileName": n} for n in chunk]
            new = task_facts(parsed(body(310, payload={"FileMessage": files})), facts)
            assert new is not None
            facts = new
        assert len(facts["mp4_files"]) == MAX_FILES
        assert facts["mp4_files"][-1]["FileName"] == names[-1]

    def test_a_vod_commit_keeps_the_file_id_and_url_and_a_vod_finish_is_noted(self) -> None:
        vod = {"FileId": "5285890784246869", "VideoUrl": "http://vod.example/x.mp4", "UserId": "u"}
        facts = task_facts(parsed(body(311, payload={"Status": 0, "TencentVod": vod})), {})
        assert facts is not None
        assert facts["vod_file_id"] == vod["FileId"]
        assert facts["vod_video_url"] == vod["VideoUrl"]
        assert facts["vod_files"] == [vod]
        assert task_facts(parsed(body(312, payload={"Status": 0})), {}) == {
            "vod_finished": True,
            "vod_status": 0,
        }

    def test_other_events_leave_no_facts(self) -> None:
        for event_type in (301, 302, 303, 307, 308):
            assert task_facts(parsed(body(event_type)), {}) is None
