"""The demo shows one relay recording and one web-page recording among its stories, each
registrable with the demo configuration's account as it stands."""

from __future__ import annotations

from pathlib import Path

from monitor.config import load_config
from monitor.demo import stories
from monitor.taskspec import validate_spec

DEMO = Path(__file__).resolve().parents[1] / "config" / "demo.yaml"


def test_one_relay_and_one_web_page_recording_are_among_the_stories() -> None:
    relay = [s for s in stories() if s.recorder_key is not None]
    web = [s for s in stories() if s.kind == "web"]
    assert len(relay) == 1
    assert len(web) == 1
    assert relay[0].kind == "cloud"


def test_the_demo_registers_them_where_the_account_s_site_serves_them() -> None:
    config = load_config(DEMO)
    sites = {name: account.site for name, account in config.accounts.items()}
    for story in stories():
        if story.recorder_key is None and story.kind == "cloud":
            continue  # registered by its 301 callback
        spec = validate_spec(
            {
                "sdk_app_id": 1400000001,
                "task_id": f"demo-{story.room}",
                "region": story.region,
                "account": "demo",
                "recorder_key": story.recorder_key,
                "kind": story.kind,
            },
            sites,
        )
        assert spec.kind.value == story.kind
