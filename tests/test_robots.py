"""Chat-robot receivers, the pure parts: signing, pacing, message text, splitting, answers,
configuration."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from monitor.alerts.payloads import Notice
from monitor.alerts.robots.dingtalk import DingTalk
from monitor.alerts.robots.feishu import Feishu
from monitor.alerts.robots.messages import (
    FIRING,
    MARKDOWN,
    PLAIN,
    RESOLVED,
    Block,
    facts_of,
    markdown_escape,
    pack,
    render_block,
    shorten,
)
from monitor.alerts.robots.pacing import Pacer, Rate, TokenBucket
from monitor.alerts.robots.platform import FAILED, OK, RETRY, THROTTLED
from monitor.alerts.robots.signing import (
    dingtalk_signature,
    dingtalk_signed_url,
    feishu_signature,
)
from monitor.alerts.robots.slack import Slack
from monitor.alerts.robots.wecom import WeCom
from monitor.alerts.robots.worker import PLATFORMS, compose
from monitor.alerts.rules import task_labels
from monitor.alerts.task_rules import error_annotations, exit_annotations
from monitor.config import ConfigError, RobotSecrets, parse_config, resolve_secrets
from monitor.models import Source, Status, Task, TaskKey, Transition
from monitor.secrets import Secret

T0 = 1_700_000_000.0
APP = 1400000001

# Signature vectors computed with openssl from the vendors' formulas, not with the code under
# test:
#   printf '1700000000000\nSEC0123456789abcdef' \
#     | openssl dgst -sha256 -hmac 'SEC0123456789abcdef' -binary | base64
#   printf '' | openssl dgst -sha256 -mac HMAC \
#     -macopt "hexkey:$(printf '1700000000\nfeishu-secret-42' | xxd -p | tr -d '\n')" \
#     -binary | base64
DINGTALK_VECTORS = [
    ("SEC0123456789abcdef", 1700000000000, "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="),
    ("SECxyz+/=", 1577836800000, "c0DwfeDXCPxaBK9WUXoWwVxkdd+9nT6X3eG7IXfF+W4="),
]
FEISHU_VECTORS = [
    ("feishu-secret-42", 1700000000, "INMLa6ItJbhwdRZRoTvT3OZMtlY5WjmWq4F2Jscs314="),
]


def exit_notice(
    task_id: str = "t-1",
    *,
    room: str = "r-42",
    leave: int | None = 3,
    firing: bool = True,
    extra_labels: dict[str, str] | None = None,
) -> Notice:
    """An exit alert as the rules write it, for a task that went InProgress -> Exited."""
    task = Task(
        sdk_app_id=APP,
        task_id=task_id,
        region="ap-guangzhou",
        account="default",
        labels={"room": room, **(extra_labels or {})},
        status=Status.EXITED,
        registered_at=T0,
        status_since=T0,
    )
    if leave is not None:
        task.extra["leave_code"] = leave
    transition = Transition(
        APP, task_id, Status.IN_PROGRESS, Status.EXITED, T0, Source.POLL, request_id="req-7f3a"
    )
    return Notice(
        fingerprint=f"fp-{task_id}",
        alertname="RecordingTaskExited",
        labels=task_labels("RecordingTaskExited", "critical", task),
        annotations=exit_annotations(task, transition, frozenset({0, 1, 2})),
        firing=firing,
        starts_at=T0,
        ends_at=None if firing else T0 + 60,
        task=TaskKey(APP, task_id),
    )


class TestSigning:
    @pytest.mark.parametrize(("secret", "timestamp", "expected"), DINGTALK_VECTORS)
    def test_dingtalk_matches_the_documented_formula(
        self, secret: str, timestamp: int, expected: str
    ) -> None:
        assert dingtalk_signature(secret, timestamp) == expected

    @pytest.mark.parametrize(("secret", "timestamp", "expected"), DINGTALK_VECTORS)
    def test_dingtalk_url_carries_timestamp_and_url_encoded_sign(
        self, secret: str, timestamp: int, expected: str
    ) -> None:
        url = dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc&sign=old", secret, timestamp
        )
        query = urlsplit(url).query
        assert "+" not in query.split("sign=")[1]  # "+" would read as a space
        assert "/" not in query.split("sign=")[1]
        assert parse_qs(query) == {
            "access_token": ["abc"],
            "timestamp": [str(timestamp)],
            "sign": [expected],
        }

    @pytest.mark.parametrize(("secret", "timestamp", "expected"), FEISHU_VECTORS)
    def test_feishu_matches_the_documented_formula(
        self, secret: str, timestamp: int, expected: str
    ) -> None:
        assert feishu_signature(secret, timestamp) == expected

    def test_feishu_signs_in_the_body_with_seconds(self) -> None:
        url, data = Feishu().request("https://h/x", {"msg_type": "x"}, "feishu-secret-42", T0)
        body = json.loads(data)
        assert url == "https://h/x"
        assert body["timestamp"] == "1700000000"
        assert body["sign"] == FEISHU_VECTORS[0][2]

    def test_unsigned_requests_are_left_alone(self) -> None:
        assert DingTalk().request("https://h/r?access_token=a", {}, None, T0)[0] == (
            "https://h/r?access_token=a"
        )
        assert "sign" not in json.loads(Feishu().request("https://h", {}, None, T0)[1])


class TestPacing:
    @staticmethod
    def greedy_sends(pacer: Pacer, until: float) -> list[float]:
        """Send whenever the pacer allows, from 0 to ``until``."""
        t, sent = 0.0, []
        while t < until:
            if pacer.take(t):
                sent.append(t)
            else:
                t += pacer.wait(t)
        return sent

    @staticmethod
    def most_in_window(sent: list[float], window: float) -> int:
        return max(sum(1 for s in sent if start <= s < start + window) for start in sent)

    @pytest.mark.parametrize(
        ("rate", "share"),
        [
            (Rate(20, 60.0), 0.75),
            (Rate(100, 60.0), 0.75),
            (Rate(5, 1.0), 0.5),
            (Rate(3, 1.0), 0.33),
        ],
    )
    def test_a_greedy_sender_stays_below_the_limit_in_every_sliding_window(
        self, rate: Rate, share: float
    ) -> None:
        sent = self.greedy_sends(Pacer([rate], 0.0), 10 * rate.window)
        assert self.most_in_window(sent, rate.window) <= rate.limit - 1
        # ...and still uses a fair share of it over time (small limits leave less room).
        assert len(sent) >= 10 * rate.limit * share

    def test_several_rates_all_hold(self) -> None:
        sent = self.greedy_sends(Pacer([Rate(100, 60.0), Rate(5, 1.0)], 0.0), 180.0)
        assert self.most_in_window(sent, 60.0) <= 99
        assert self.most_in_window(sent, 1.0) <= 4

    def test_emptying_starts_again_slowly(self) -> None:
        bucket = TokenBucket.under(Rate(20, 60.0), 0.0)
        assert bucket.take(0.0)
        bucket.empty(0.0)
        assert not bucket.take(0.0)
        assert bucket.wait(0.0) == pytest.approx(60.0 / 15)  # 19 a minute: 4 at once, 15 spread

    def test_a_tiny_limit_sends_one_per_window(self) -> None:
        sent = self.greedy_sends(Pacer([Rate(1, 1.0)], 0.0), 10.0)
        assert sent == pytest.approx([float(i) for i in range(10)])

    def test_nonsense_rates_are_refused(self) -> None:
        with pytest.raises(ValueError, match="limit"):
            Rate(0, 60.0)
        with pytest.raises(ValueError, match="at least one"):
            Pacer([], 0.0)


class TestFacts:
    def test_an_exit_alert_gives_every_fact_a_reader_needs(self) -> None:
        facts = facts_of(exit_notice(), "https://mon.example/")
        assert facts.status == FIRING
        assert (facts.alertname, facts.severity) == ("RecordingTaskExited", "critical")
        assert facts.task == f"t-1 ({APP}, ap-guangzhou)"
        assert facts.room == "r-42"
        assert (facts.from_status, facts.to_status) == ("InProgress", "Exited")
        assert facts.code == "leave code 3"
        assert facts.meaning == "bot kicked by the server"
        assert facts.request_id == "req-7f3a"
        assert facts.starts_at == "2023-11-14 22:13:20 UTC"
        assert facts.ends_at == ""
        assert facts.link == f"https://mon.example/api/v1/tasks/{APP}/t-1"

    def test_a_resolved_alert_says_when_it_resolved(self) -> None:
        facts = facts_of(exit_notice(firing=False))
        assert facts.status == RESOLVED
        assert facts.ends_at == "2023-11-14 22:14:20 UTC"
        assert facts.link == ""  # no external_url, no link

    def test_an_error_alert_gives_the_error_code_and_what_it_means(self) -> None:
        task = Task(
            sdk_app_id=APP,
            task_id="t-2",
            region="ap-guangzhou",
            account="default",
            consecutive_errors=3,
            last_error_code="AuthFailure.SignatureFailure",
            last_request_id="req-err-1",
        )
        notice = Notice(
            "fp",
            "RecordingTaskError",
            task_labels("RecordingTaskError", "warning", task),
            error_annotations(task, 3),
            True,
            T0,
        )
        facts = facts_of(notice)
        assert facts.code == "error code AuthFailure.SignatureFailure"
        assert facts.meaning == "the credentials were rejected"
        assert facts.request_id == "req-err-1"

    def test_an_error_alert_without_a_code_claims_no_meaning(self) -> None:
        task = Task(APP, "t-3", "ap-guangzhou", "default", consecutive_errors=3)
        notice = Notice(
            "fp",
            "RecordingTaskError",
            task_labels("RecordingTaskError", "warning", task),
            error_annotations(task, 3),
            True,
            T0,
        )
        assert "last error code unknown." in notice.annotations["description"]
        assert (facts_of(notice).code, facts_of(notice).meaning) == ("", "")

    def test_a_code_at_the_end_of_a_sentence_keeps_only_its_own_dots(self) -> None:
        task = Task(APP, "t-4", "ap-guangzhou", "default", last_error_code="InternalError.DB")
        notice = Notice(
            "fp",
            "RecordingTaskError",
            task_labels("RecordingTaskError", "warning", task),
            error_annotations(task, 3),
            True,
            T0,
        )
        assert "last error code InternalError.DB." in notice.annotations["description"]
        facts = facts_of(notice)
        assert facts.code == "error code InternalError.DB"
        assert facts.meaning == "a temporary error on Tencent Cloud's side"

    def test_an_undocumented_leave_code_says_so(self) -> None:
        facts = facts_of(exit_notice(leave=77))
        assert (facts.code, facts.meaning) == ("leave code 77", "undocumented leave code")


class TestRendering:
    HOSTILE = '*bold* _x_ [click](http://evil.example) <at user_id="all"> `c` # h\n- item'

    def test_markdown_characters_from_labels_are_escaped(self) -> None:
        escaped = markdown_escape(self.HOSTILE)
        assert "\n" not in escaped
        assert "[click](" not in escaped
        assert "<" not in escaped
        assert ">" not in escaped
        assert escaped.count("\\*") == 2
        assert "\\[click\\](http://evil.example)" in escaped
        assert markdown_escape("# title") == "\\# title"
        assert markdown_escape("1. one") == "\\1. one"
        assert markdown_escape("a-b.c") == "a-b.c"  # readable where nothing can happen

    def test_a_unicode_room_and_a_markdown_label_render_safely(self) -> None:
        notice = exit_notice(room="会议室-东京 🎥", extra_labels={"team": self.HOSTILE})
        hostile_room = exit_notice(room=self.HOSTILE)
        block = render_block(facts_of(notice), MARKDOWN)
        assert "**Room**: 会议室-东京 🎥" in block.text
        hostile = render_block(facts_of(hostile_room), MARKDOWN).text
        assert "[click](" not in hostile
        assert "<at" not in hostile
        assert '&lt;at user\\_id="all"&gt;' in hostile
        # Nothing but the monitor's own lines start a line.
        for line in hostile.split("\n"):
            assert line.startswith(("\U0001f534", "Recording", "**"))

    def test_plain_platforms_keep_values_verbatim_on_one_line(self) -> None:
        block = render_block(facts_of(exit_notice(room=self.HOSTILE)), PLAIN)
        assert self.HOSTILE.replace("\n", " ") in block.text

    def test_resolved_alerts_are_marked_in_the_text(self) -> None:
        firing = render_block(facts_of(exit_notice()), MARKDOWN)
        resolved = render_block(facts_of(exit_notice(firing=False)), MARKDOWN)
        assert "FIRING" in firing.text
        assert "RESOLVED" not in firing.text
        assert "RESOLVED" in resolved.text
        assert "Resolved**: 2023-11-14 22:14:20 UTC" in resolved.text
        assert (firing.firing, resolved.firing) == (True, False)

    def test_the_link_is_in_the_text_for_markdown_and_a_button_elsewhere(self) -> None:
        facts = facts_of(exit_notice("a(b)"), "https://mon.example")
        md = render_block(facts, MARKDOWN)
        assert f"[Open in monitor](https://mon.example/api/v1/tasks/{APP}/a%28b%29)" in md.text
        plain = render_block(facts, PLAIN)
        assert "https://" not in plain.text
        assert plain.link == facts.link

    def test_a_template_replaces_the_text_with_escaped_values(self) -> None:
        facts = facts_of(exit_notice(room="*r*"), "https://m")
        block = render_block(facts, MARKDOWN, "$status $alertname in $room: $code ($meaning) $$")
        assert block.text == (
            "FIRING RecordingTaskExited in \\*r\\*: leave code 3 (bot kicked by the server) $"
        )


class TestSplitting:
    def test_pack_keeps_order_and_fills_each_run(self) -> None:
        runs = pack(list(range(10)), lambda run: sum(run) <= 10)
        assert runs == [[0, 1, 2, 3, 4], [5], [6], [7], [8], [9]]
        assert pack([], lambda run: True) == []

    def test_a_hundred_alerts_for_wecom_fit_in_few_messages_of_at_most_4096_bytes(self) -> None:
        notices = [exit_notice(f"task-{i:03d}", room=f"房间-{i}") for i in range(100)]
        messages = compose(notices, WeCom(), "https://mon.example", None)
        assert 1 < len(messages) < 100
        carried = [n.fingerprint for _, members in messages for n in members]
        assert carried == [n.fingerprint for n in notices]
        for index, (body, _) in enumerate(messages):
            content = body["markdown"]["content"]
            assert len(content.encode()) <= 4096
            assert f"({index + 1}/{len(messages)})" in content.split("\n")[0]

    @pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu", "slack"])
    def test_one_enormous_alert_is_shortened_to_fit(self, kind: str) -> None:
        notice = exit_notice()
        huge = Notice(
            notice.fingerprint,
            notice.alertname,
            notice.labels,
            {"summary": "s", "description": "x" * 30_000 + " & " + "y" * 30_000},
            True,
            T0,
        )
        platform = PLATFORMS[kind]
        [(body, members)] = compose([huge], platform, "", "$description")
        assert members == [huge]
        text = json.dumps(body, ensure_ascii=False)
        assert "…" in text
        assert len(text.encode()) <= 40_000
        if kind == "wecom":
            assert len(body["markdown"]["content"].encode()) <= 4096

    def test_shorten_never_leaves_half_an_escape(self) -> None:
        block = Block("a" * 10 + "\\" * 30, "", True)
        short = shorten(block, lambda b: len(b.text) <= 20)
        assert not short.text.rstrip(" …").endswith("\\") or short.text.count("\\") % 2 == 0

    def test_an_alert_that_fired_and_resolved_within_the_window_is_shown_once_resolved(
        self,
    ) -> None:
        fired, resolved = exit_notice(), exit_notice(firing=False)
        [(body, members)] = compose([fired, resolved], WeCom(), "", None)
        assert members == [fired, resolved]
        content = body["markdown"]["content"]
        assert content.count("RecordingTaskExited") == 2  # the title and one block
        assert "RESOLVED" in content
        assert "FIRING" not in content

    def test_slack_stays_under_fifty_blocks(self) -> None:
        notices = [exit_notice(f"t{i}") for i in range(120)]
        messages = compose(notices, Slack(), "https://m", None)
        assert len(messages) >= 3
        assert all(len(body["blocks"]) <= 50 for body, _ in messages)
        assert sum(len(m) for _, m in messages) == 120

    def test_feishu_cards_are_red_when_firing_and_green_when_all_resolved(self) -> None:
        [(firing, _)] = compose([exit_notice()], Feishu(), "", None)
        [(resolved, _)] = compose([exit_notice(firing=False)], Feishu(), "", None)
        assert firing["card"]["header"]["template"] == "red"
        assert resolved["card"]["header"]["template"] == "green"
        assert "RESOLVED" in resolved["card"]["header"]["title"]["content"]


class TestAnswers:
    @pytest.mark.parametrize(
        ("kind", "status", "headers", "text", "expected"),
        [
            ("wecom", 200, {}, '{"errcode":0,"errmsg":"ok"}', OK),
            ("wecom", 200, {}, '{"errcode":45009,"errmsg":"freq"}', THROTTLED),
            ("wecom", 200, {}, '{"errcode":40058,"errmsg":"too long"}', FAILED),
            ("wecom", 200, {}, '{"errcode":-1,"errmsg":"busy"}', RETRY),
            ("wecom", 200, {}, "<html>", RETRY),
            ("dingtalk", 200, {}, '{"errcode":130101,"errmsg":"send too fast"}', THROTTLED),
            ("dingtalk", 200, {}, '{"errcode":310000,"errmsg":"sign not match"}', FAILED),
            ("dingtalk", 502, {}, "bad gateway", RETRY),
            ("feishu", 200, {}, '{"code":0,"msg":"success"}', OK),
            ("feishu", 200, {}, '{"StatusCode":0,"StatusMessage":"success"}', OK),
            ("feishu", 200, {}, '{"code":9499,"msg":"too many request"}', THROTTLED),
            ("feishu", 200, {}, '{"code":11232,"msg":"frequency limited"}', THROTTLED),
            ("feishu", 200, {}, '{"code":19021,"msg":"sign match fail"}', FAILED),
            ("slack", 200, {}, "ok", OK),
            ("slack", 429, {"Retry-After": "7"}, "rate_limited", THROTTLED),
            ("slack", 400, {}, "invalid_payload", FAILED),
            ("slack", 404, {}, "no_service", FAILED),
        ],
    )
    def test_each_platforms_codes(
        self, kind: str, status: int, headers: dict[str, str], text: str, expected: str
    ) -> None:
        assert PLATFORMS[kind].answer(status, headers, text).kind == expected

    def test_retry_after_is_read(self) -> None:
        answer = Slack().answer(429, {"Retry-After": "7"}, "")
        assert (answer.code, answer.retry_after) == ("429", 7.0)
        assert Slack().answer(429, {"Retry-After": "soon"}, "").retry_after is None


ACCOUNT = {"TENCENTCLOUD_SECRET_ID": "AKIDexample", "TENCENTCLOUD_SECRET_KEY": "key-example"}


def robots_config(receivers: str, server: str = "") -> Any:
    return parse_config(f"{server}alerts:\n  receivers:\n{receivers}")


class TestConfig:
    def test_every_robot_type_loads_with_its_defaults(self) -> None:
        config = robots_config(
            "    - {type: wecom, url_env: W}\n"
            "    - {type: dingtalk, url_env: D, secret_env: DS}\n"
            "    - {type: feishu, url_file: /run/f, secret_file: /run/fs}\n"
            "    - {type: slack, url_env: S, group_wait: 0s, rate_limit: 2, rate_window: 1s}\n"
        )
        wecom, dingtalk, feishu, slack = config.alerts.receivers
        assert (wecom.name, wecom.type) == ("wecom-0", "wecom")
        assert wecom.group_wait == 3.0
        assert wecom.resend is None  # off unless set
        assert dingtalk.secret_env == "DS"
        assert str(feishu.secret_file) == "/run/fs"
        assert slack.group_wait == 0.0
        assert (slack.rate_limit, slack.rate_window) == (2, 1.0)

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ("{type: wecom}", "set one of url_env, url_file, url"),
            ("{type: wecom, url_env: A, url_file: /b}", "set only one of url_env"),
            ("{type: slack, url_env: A, secret_env: B}", "slack robots are not signed"),
            ("{type: feishu, url_env: A, template: '$nope'}", "unknown template field(s) nope"),
            ("{type: feishu, url_env: A, template: '$'}", "invalid template"),
            ("{type: feishu, url_env: A, group_wait: -1s}", "invalid duration"),
        ],
    )
    def test_mistakes_are_named(self, entry: str, message: str) -> None:
        with pytest.raises(ConfigError) as info:
            robots_config(f"    - {entry}\n")
        assert message in "\n".join(info.value.errors)

    @pytest.mark.parametrize("key", ["url_env", "url_file"])
    def test_a_url_pasted_where_a_name_goes_is_refused_without_showing_it(self, key: str) -> None:
        url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-s3cr3t"
        with pytest.raises(ConfigError) as info:
            robots_config(f"    - {{type: wecom, {key}: '{url}'}}\n")
        [error] = info.value.errors
        assert f"alerts.receivers[0].{key}: takes the name of" in error
        assert "s3cr3t" not in error
        assert "qyapi" not in error

    def test_external_url_is_checked(self) -> None:
        config = robots_config("    []\n", "server: {external_url: 'https://mon.example'}\n")
        assert config.server.external_url == "https://mon.example"
        with pytest.raises(ConfigError, match="invalid URL"):
            robots_config("    []\n", "server: {external_url: 'mon.example'}\n")

    def test_secrets_resolve_and_reach_the_redactor(self) -> None:
        url = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123"
        config = robots_config("    - {type: dingtalk, name: dt, url_env: D, secret_env: DS}\n")
        secrets = resolve_secrets(config, {"D": url, "DS": "SECsigning", **ACCOUNT})
        assert secrets.robots == {"dt": RobotSecrets(Secret(url), Secret("SECsigning"))}
        hidden = secrets.secret_values()
        assert url in hidden
        assert "SECsigning" in hidden
        assert "0123456789abcdef0123" in hidden  # the token alone, too
        assert url not in config.summary()
        assert "environment variable D, signed" in config.summary()

    def test_a_robot_url_that_is_no_url_is_refused_without_showing_it(self) -> None:
        config = robots_config("    - {type: wecom, url_env: W}\n")
        with pytest.raises(ConfigError) as info:
            resolve_secrets(config, {"W": "key=s3cr3t-value", **ACCOUNT})
        [error] = info.value.errors
        assert "environment variable W is not an http(s) URL" in error
        assert "s3cr3t" not in error

    def test_a_missing_robot_url_is_an_error(self) -> None:
        config = robots_config("    - {type: slack, url_env: S}\n")
        with pytest.raises(ConfigError, match="environment variable S is not set"):
            resolve_secrets(config, ACCOUNT)

    def test_a_literal_url_is_accepted_with_a_warning(self) -> None:
        config = robots_config("    - {type: slack, url: 'https://hooks.slack.com/services/x'}\n")
        assert any("literal secret" in w for w in config.warnings())
        assert "hooks.slack.com" not in repr(config.alerts.receivers[0])
