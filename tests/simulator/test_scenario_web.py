"""Scenario and control-surface keys of web-page recordings, relay recordings, TUIKit
envelopes and the default site."""

from __future__ import annotations

import pytest

from monitor.simulator import ManualClock, Simulator, SimulatorControl, load_scenario
from monitor.simulator.scenario import ScenarioError, parse_scenario, parse_task
from monitor.trtc.sites import Site
from tests.simulator.helpers import APP, EXAMPLE, Client


class TestScenarioKeys:
    def test_the_example_has_a_relay_and_a_web_recording(self) -> None:
        scenario = load_scenario(EXAMPLE, env={"TRTC_CALLBACK_KEY": "k"})
        assert scenario.site is None
        assert scenario.callback is not None
        assert scenario.callback.envelope == "trtc"
        sim = Simulator.from_scenario(scenario, clock=ManualClock())
        relay = sim.task_info(APP, "demo-relay")
        web = sim.task_info(APP, "demo-web")
        assert relay is not None
        assert relay["recorder_key"] == "relay-demo-1"
        assert web is not None
        assert (web["kind"], web["record_id"], web["storage"]) == ("web", "lesson-1", "vod")

    def test_site_and_envelope_are_read(self) -> None:
        scenario = parse_scenario(
            {
                "site": "china",
                "callback": {"url": "http://127.0.0.1:1/cb", "key": "t", "envelope": "tuilivekit"},
            }
        )
        assert scenario.site is Site.CHINA
        assert scenario.callback is not None
        assert scenario.callback.envelope == "tuilivekit"
        assert Simulator.from_scenario(scenario).default_site is Site.CHINA

    @pytest.mark.parametrize(
        ("data", "key"),
        [
            ({"site": "moon"}, "site"),
            ({"callback": {"url": "http://h/cb", "key": "k", "envelope": "soap"}}, "envelope"),
            ({"tasks": [{"sdk_app_id": APP, "kind": "pdf"}]}, "tasks[0].kind"),
            ({"tasks": [{"sdk_app_id": APP, "record_id": "r"}]}, "tasks[0].record_id"),
            ({"tasks": [{"sdk_app_id": APP, "recorder_key": ""}]}, "tasks[0].recorder_key"),
        ],
    )
    def test_a_bad_value_names_its_key(self, data: object, key: str) -> None:
        with pytest.raises(ScenarioError) as caught:
            parse_scenario(data)
        assert caught.value.key.endswith(key)

    def test_a_web_task_goes_to_vod_unless_told(self) -> None:
        assert parse_task({"sdk_app_id": APP, "kind": "web"}).vod is True
        assert parse_task({"sdk_app_id": APP}).vod is False


class TestControl:
    async def test_the_control_surface_adds_web_and_relay_tasks(
        self, sim: Simulator, client: Client
    ) -> None:
        async with SimulatorControl(sim.url) as control:
            web_id = await control.add_task(APP, kind="web", record_id="c-1", idle=0)
            relay_id = await control.add_task(APP, "relay-ctl", recorder_key="rk-9", idle=0)
            info = await control.task(APP, web_id)
        assert info["kind"] == "web"
        singapore = {"X-TC-Region": "ap-singapore"}
        by_record = await client.call(
            "DescribeWebRecord", {"SdkAppId": APP, "RecordId": "c-1"}, headers=singapore
        )
        assert by_record.response["TaskId"] == web_id
        relay = await client.call(
            "DescribeCloudRecording", {"SdkAppId": APP, "TaskId": relay_id, "RecorderKey": "rk-9"}
        )
        assert relay.response["RecorderKey"] == "rk-9"
