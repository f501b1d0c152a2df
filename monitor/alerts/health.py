"""What was last seen of each account's API calls and credentials, which the monitor-level
alerts are decided from (``rules.account_alerts``); the engine folds what it hears into them
with ``conditions.observe_outcome`` and ``observe_credentials``."""

from __future__ import annotations

from collections.abc import ItemsView

from monitor.alerts.conditions import AccountHealth

__all__ = ["Accounts"]


class Accounts:
    """The health of every account seen, and the accounts that left the configuration since
    the last sweep (whose alerts resolve)."""

    __slots__ = ("_forgotten", "_health")

    def __init__(self) -> None:
        self._health: dict[str, AccountHealth] = {}
        self._forgotten: set[str] = set()

    def __getitem__(self, account: str) -> AccountHealth:
        """The account's health, made on first sight (which also un-forgets it)."""
        health = self._health.get(account)
        if health is None:
            health = self._health[account] = AccountHealth()
            self._forgotten.discard(account)
        return health

    def items(self) -> ItemsView[str, AccountHealth]:
        return self._health.items()

    def forget(self, account: str) -> None:
        self._health.pop(account, None)
        self._forgotten.add(account)

    def take_forgotten(self) -> set[str]:
        """The accounts forgotten since the last call."""
        forgotten, self._forgotten = self._forgotten, set()
        return forgotten
