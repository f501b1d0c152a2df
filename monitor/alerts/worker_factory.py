"""The delivery worker for one configured receiver, whichever its kind.

The Alertmanager and webhook workers live in :mod:`monitor.alerts.receivers`; the chat robots'
worker builds on them in :mod:`monitor.alerts.robots.worker`. Choosing between them here, above
both, keeps the imports one way: the robots import the receivers, never the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.alerts.receivers import (
    AlertmanagerWorker,
    DeliveryContext,
    ReceiverConfig,
    ReceiverWorker,
    WebhookWorker,
    destinations,
)
from monitor.alerts.robots.worker import build_robot_worker
from monitor.config import AlertmanagerReceiver, RobotReceiver, RobotSecrets

__all__ = ["build_worker"]


def build_worker(
    config: ReceiverConfig,
    context: DeliveryContext,
    *,
    headers: Mapping[str, str] | None = None,
    robot: RobotSecrets | None = None,
) -> ReceiverWorker:
    """The worker for one ``alerts.receivers`` entry; ``robot`` is a chat robot's URL and
    secret (``ResolvedSecrets.robots``), required for the robot types."""
    if isinstance(config, RobotReceiver):
        if robot is None:
            raise ValueError(f"receiver {config.name}: the robot URL was not resolved")
        return build_robot_worker(config, robot, context)
    kind = AlertmanagerWorker if isinstance(config, AlertmanagerReceiver) else WebhookWorker
    return kind(
        config.name,
        destinations(config),
        queue_size=config.queue_size,
        resend=config.resend,
        timeout=config.timeout,
        context=context,
        headers=headers,
    )
