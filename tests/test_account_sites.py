"""``accounts.<name>.site``: the default access host and the regions an account's tasks may use
follow the account's site; a task in another region is refused at registration (API, bulk,
YAML), and the callbacks' account and region must agree too."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.accounts import build_accounts
from monitor.config import ConfigError, parse_config
from monitor.simulator import Life, Simulator
from monitor.trtc.sites import CHINA_HOST, INTERNATIONAL_HOST, Site
from tests.conftest import DaemonFactory
from tests.support import make_task, wait_for_async

APP = 1400000001
CHINA_REGIONS = "ap-beijing, ap-guangzhou, ap-shanghai"


def two_accounts(endpoint: str = "", db: Path | None = None, tasks: str = "") -> str:
    china_endpoint = f'    endpoint: "{endpoint}"\n' if endpoint else ""
    intl_endpoint = f'    endpoint: "{endpoint}"\n' if endpoint else ""
    storage = f"storage:\n  path: {db}\n" if db else ""
    return (
        'server:\n  listen: "127.0.0.1:0"\n  api_token_env: TEST_API_TOKEN\n'
        f"{storage}"
        "accounts:\n"
        "  default:\n    secret_id_env: TEST_SECRET_ID\n    secret_key_env: TEST_SECRET_KEY\n"
        f"{intl_endpoint}"
        "  cn:\n    site: china\n"
        "    secret_id_env: TEST_SECRET_ID\n    secret_key_env: TEST_SECRET_KEY\n"
        f"{china_endpoint}"
        "polling:\n  interval: 1s\n  jitter: 0%\n  timeout: 2s\n"
        f"{tasks}"
    )


class TestConfiguration:
    def test_the_default_host_follows_the_site(self) -> None:
        config = parse_config(two_accounts())
        assert config.accounts["default"].site == "international"
        assert config.accounts["default"].endpoint == INTERNATIONAL_HOST
        assert config.accounts["cn"].site == "china"
        assert config.accounts["cn"].endpoint == CHINA_HOST
        assert config.accounts["cn"].regions == ("ap-beijing", "ap-guangzhou", "ap-shanghai")

    def test_an_explicit_endpoint_wins_for_the_host(self) -> None:
        config = parse_config(two_accounts("http://127.0.0.1:9"))
        assert config.accounts["cn"].endpoint == "http://127.0.0.1:9"
        assert config.accounts["cn"].site == "china"

    def test_an_unknown_site_is_a_located_error(self) -> None:
        with pytest.raises(ConfigError) as caught:
            parse_config("accounts:\n  default:\n    site: moon\n")
        (line,) = caught.value.errors
        assert "accounts.default.site" in line
        assert ":3:" in line

    def test_a_static_task_in_a_region_its_site_does_not_serve_is_refused(self) -> None:
        tasks = "tasks:\n  - {sdk_app_id: 1400000001, task_id: t, region: ap-mumbai, account: cn}\n"
        with pytest.raises(ConfigError) as caught:
            parse_config(two_accounts(tasks=tasks))
        (line,) = caught.value.errors
        assert "tasks[0].region" in line
        assert "ap-mumbai is not served for cloud recording by the china site" in line
        assert CHINA_REGIONS in line
        ok = "tasks:\n  - {sdk_app_id: 1400000001, task_id: t, region: ap-mumbai}\n"
        assert parse_config(two_accounts(tasks=ok)).tasks[0].region == "ap-mumbai"

    def test_callbacks_polled_with_an_account_whose_site_lacks_their_region_are_refused(
        self,
    ) -> None:
        callbacks = "callbacks:\n  key: k\n  account: cn\n  region: ap-singapore\n"
        with pytest.raises(ConfigError) as caught:
            parse_config(two_accounts() + callbacks)
        (line,) = caught.value.errors
        assert "callbacks.region" in line
        assert CHINA_REGIONS in line

    def test_the_run_time_account_polls_the_site_s_host(self) -> None:
        config = parse_config(two_accounts())
        accounts = build_accounts(config, {"default": None, "cn": None})  # type: ignore[dict-item]
        assert accounts["cn"].site is Site.CHINA
        assert accounts["cn"].endpoint.url("ap-beijing") == f"https://{CHINA_HOST}/"
        assert accounts["default"].endpoint.url("ap-mumbai") == f"https://{INTERNATIONAL_HOST}/"


class TestRegistration:
    async def test_a_china_site_account_refuses_ap_mumbai_and_polls_its_own_regions(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        simulator.default_site = Site.CHINA  # what a China-site host would serve
        running = await make_daemon(text=two_accounts(simulator.url, tmp_path / "m.db"))
        refused = await running.register(APP, "mumbai", region="ap-mumbai", account="cn")
        assert refused.status == 422
        message = (await refused.json())["error"]["message"]
        assert "ap-mumbai is not served for cloud recording by the china site" in message
        assert CHINA_REGIONS in message
        url = f"{running.url}/api/v1/tasks"
        bulk = [
            {"sdk_app_id": APP, "task_id": "a", "region": "ap-beijing", "account": "cn"},
            {"sdk_app_id": APP, "task_id": "b", "region": "ap-mumbai", "account": "cn"},
        ]
        async with running.session.post(url, json=bulk, headers=running.auth()) as r:
            assert r.status == 422
            assert CHINA_REGIONS in await r.text()
        async with running.session.get(url) as r:
            assert (await r.json())["tasks"] == []  # nothing registered
        task_id = simulator.add_task(APP, life=Life(idle=0.3, in_progress=600))
        created = await running.register(APP, task_id, region="ap-beijing", account="cn")
        assert created.status == 201

        async def running_now() -> bool:
            async with running.session.get(f"{url}/{APP}/{task_id}") as r:
                return bool((await r.json())["status"] == "InProgress")

        await wait_for_async(running_now, timeout=20, what="the China-site task polled")
        # The international account may still use ap-mumbai.
        other = simulator.add_task(APP, life=Life(idle=0.3, in_progress=600))
        assert (await running.register(APP, other, region="ap-mumbai")).status == 201

    async def test_the_budget_keys_a_china_account_by_the_china_host(
        self, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        # No task is registered: nothing is sent anywhere but loopback.
        running = await make_daemon(text=two_accounts(db=tmp_path / "m.db"))
        budget = running.daemon.budget
        assert budget.account_names() == {"default": Site.INTERNATIONAL, "cn": Site.CHINA}
        task = make_task("t", account="cn", region="ap-shanghai")
        assert budget.bucket_of(task).host == CHINA_HOST
        assert budget.bucket_of(make_task("u", region="ap-mumbai")).host == INTERNATIONAL_HOST
