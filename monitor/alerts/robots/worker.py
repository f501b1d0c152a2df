"""Delivery to one chat robot: group, split, pace, back off.

Alerts that change within ``group_wait`` of the first one go out together; the group becomes
as few messages as the platform's size limit allows; each message waits for a token of the
robot's pacer, so the robot is never asked faster than its platform allows; a "too fast"
answer (the platform counts other senders too) pauses the robot and the same message is sent
again afterwards, as often as it takes, since nothing was lost. Other failures are retried a
few times and then reported to the engine, which queues the alerts again later.

Only this worker's own task waits: the engine's ``enqueue`` never does, so polling never
slows down because a robot is slow, throttled or gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

import aiohttp
import structlog

from monitor.alerts.payloads import Notice
from monitor.alerts.receivers import (
    FAILURE,
    SUCCESS,
    DeliveryContext,
    ReceiverConfig,
    ReceiverWorker,
    origin,
)
from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.dingtalk import DingTalk
from monitor.alerts.robots.feishu import Feishu
from monitor.alerts.robots.messages import (
    Block,
    facts_of,
    notices_by_fingerprint,
    pack,
    render_block,
    shorten,
    title_of,
)
from monitor.alerts.robots.pacing import Pacer, Rate
from monitor.alerts.robots.platform import OK, RETRY, THROTTLED, Answer, Platform
from monitor.alerts.robots.slack import Slack
from monitor.alerts.robots.wecom import WeCom
from monitor.config import RobotReceiver, RobotSecrets

log = structlog.get_logger("monitor.alerts")

PLATFORMS: Final[Mapping[str, Platform]] = {
    p.kind: p for p in (WeCom(), DingTalk(), Feishu(), Slack())
}
THROTTLED_OUTCOME: Final = "throttled"
# Alerts taken from the queue at once: a group this large is already several messages.
MAX_GROUP: Final = 200
MAX_ANSWER: Final = 64 * 1024
# The title of a part is measured with the widest part number it can get.
_PART_PLACEHOLDER: Final = " (999/999)"


Item = tuple[Block, str, list[Notice]]  # an alert's block, its name, the notices it stands for


def compose(
    group: Sequence[Notice], platform: Platform, external_url: str, template: str | None
) -> list[tuple[dict[str, Any], list[Notice]]]:
    """The bodies to send for ``group``, each with the notices it carries: as few as the
    platform's size limit allows, numbered when there are several. Pure."""
    items: list[Item] = []
    for shown, members in notices_by_fingerprint(group):
        block = render_block(facts_of(shown, external_url), platform.dialect, template)
        items.append((block, shown.alertname, members))

    def title(run: Sequence[Item]) -> str:
        return title_of([b for b, _, _ in run], [n for _, n, _ in run])

    def fits(run: Sequence[Item]) -> bool:
        return platform.fits(title(run) + _PART_PLACEHOLDER, [b for b, _, _ in run])

    runs = pack(items, fits)
    out: list[tuple[dict[str, Any], list[Notice]]] = []
    for index, run in enumerate(runs):
        if len(run) == 1 and not fits(run):
            block, name, members = run[0]
            widest = title(run) + _PART_PLACEHOLDER

            def alone_fits(b: Block, widest: str = widest) -> bool:
                return platform.fits(widest, [b])

            run = [(shorten(block, alone_fits), name, members)]
        head = title(run)
        if len(runs) > 1:
            head += f" ({index + 1}/{len(runs)})"
        out.append((platform.body(head, [b for b, _, _ in run]), [n for *_, ms in run for n in ms]))
    return out


def rates_of(config: RobotReceiver, platform: Platform) -> tuple[Rate, ...]:
    if config.rate_limit is None:
        return platform.rates
    return (Rate(config.rate_limit, config.rate_window),)


class RobotWorker(ReceiverWorker):
    """One chat robot (see the module docstring)."""

    kind: ClassVar[str] = "robot"

    def __init__(
        self,
        name: str,
        platform: Platform,
        robot: RobotSecrets,
        *,
        group_wait: float,
        rates: Sequence[Rate],
        template: str | None,
        queue_size: int,
        resend: float | None,
        timeout: float,
        context: DeliveryContext,
        throttle: RetryPolicy | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            name,
            (),  # the robot URL is a secret: kept apart, never in a repr or a log
            queue_size=queue_size,
            resend=resend,
            timeout=timeout,
            context=context,
        )
        self.platform = platform
        self.robot = robot
        self.group_wait = group_wait
        self.rates = tuple(rates)
        self.template = template
        self.throttle = throttle or platform.throttle
        self._wall = wall
        self._pacer: Pacer | None = None  # made on first use: it needs the running loop's time
        # Set when stopping: a group still gathering goes out at once, within the stop's grace.
        self._flush = asyncio.Event()
        self._count[THROTTLED_OUTCOME] = context.notifications.labels(name, THROTTLED_OUTCOME)

    def __repr__(self) -> str:
        return f"RobotWorker({self.name!r}, {self.platform.kind})"

    def same_queue(self, config: ReceiverConfig) -> bool:
        return (
            isinstance(config, RobotReceiver)
            and config.type == self.platform.kind
            and config.queue_size == self.queue_size
        )

    def same_robot(self, robot: RobotSecrets | None) -> bool:
        return robot == self.robot

    def update(self, config: ReceiverConfig, headers: Mapping[str, str] | None = None) -> None:
        super().update(config, headers)
        if isinstance(config, RobotReceiver):
            self.group_wait = config.group_wait
            self.template = config.template
            rates = rates_of(config, self.platform)
            if rates != self.rates:
                self.rates, self._pacer = rates, None

    # --- grouping ----------------------------------------------------------------------------

    async def stop(self, grace: float = 2.0) -> None:
        self._flush.set()
        await super().stop(grace)

    async def _collect(self) -> list[Notice]:
        queue = self._queue
        group = [await queue.get()]
        if self.group_wait > 0 and not self._flush.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush.wait(), self.group_wait)
        while len(group) < MAX_GROUP and not queue.empty():
            group.append(queue.get_nowait())
        return group

    def messages(self, group: Sequence[Notice]) -> list[tuple[dict[str, Any], list[Notice]]]:
        return compose(group, self.platform, self.external_url, self.template)

    # --- delivery ----------------------------------------------------------------------------

    async def _send(self, batch: list[Notice]) -> list[Notice]:
        delivered: list[Notice] = []
        for body, members in self.messages(batch):
            if await self._deliver(body):
                delivered.extend(members)
            elif self._closing:
                break
        return delivered

    def _pacing(self) -> Pacer:
        if self._pacer is None:
            self._pacer = Pacer(self.rates, asyncio.get_running_loop().time())
        return self._pacer

    async def _paced(self) -> None:
        loop = asyncio.get_running_loop()
        pacer = self._pacing()
        while True:
            now = loop.time()
            if pacer.take(now):
                return
            await asyncio.sleep(pacer.wait(now))

    async def _deliver(self, body: dict[str, Any]) -> bool:
        """Send one message; True once the platform accepted it."""
        failures = throttles = 0
        while True:
            await self._paced()
            answer = await self._exchange(body)
            if answer.kind == OK:
                self._count[SUCCESS].inc()
                if throttles:
                    log.info("notification_throttle_over", receiver=self.name, throttled=throttles)
                return True
            if answer.kind == THROTTLED:
                self._count[THROTTLED_OUTCOME].inc()
                throttles += 1
                if self._closing:
                    return False
                pause = answer.retry_after
                if pause is None:
                    pause = self.throttle.delay(throttles)
                if throttles == 1:
                    log.warning(
                        "notification_throttled",
                        receiver=self.name,
                        type=self.platform.kind,
                        code=answer.code,
                        pause=pause,
                        hint="the robot is asked too often (another sender?); backing off",
                    )
                self._pacing().empty(asyncio.get_running_loop().time())
                await asyncio.sleep(pause)
                continue
            self._count[FAILURE].inc()
            failures += 1
            if answer.kind != RETRY or failures >= self.retry.attempts or self._closing:
                log.warning(
                    "notification_failed",
                    receiver=self.name,
                    type=self.platform.kind,
                    target=origin(self.robot.url.get()),
                    code=answer.code,
                    attempts=failures,
                )
                return False
            await asyncio.sleep(self.retry.delay(failures))

    async def _exchange(self, body: dict[str, Any]) -> Answer:
        secret = self.robot.secret.get() if self.robot.secret is not None else None
        url, data = self.platform.request(self.robot.url.get(), body, secret, self._wall())
        try:
            async with self._session.post(
                url,
                data=data,
                headers=self._request_headers(),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                # Answers are a few bytes of JSON; never hold more than this of a wrong one.
                text = (await response.content.read(MAX_ANSWER)).decode("utf-8", "replace")
                return self.platform.answer(response.status, response.headers, text)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(RETRY, type(exc).__name__)


def build_robot_worker(
    config: RobotReceiver, robot: RobotSecrets, context: DeliveryContext
) -> RobotWorker:
    platform = PLATFORMS[config.type]
    return RobotWorker(
        config.name,
        platform,
        robot,
        group_wait=config.group_wait,
        rates=rates_of(config, platform),
        template=config.template,
        queue_size=config.queue_size,
        resend=config.resend,
        timeout=config.timeout,
        context=context,
    )
