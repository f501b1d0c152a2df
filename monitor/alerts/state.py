"""The alert records: what the engine remembers having fired, kept durable through the store.

One :class:`AlertBook` holds every record this process answers for, indexed by fingerprint and
by task, with the count of firing alerts by name. Changes are marked dirty in memory and saved
together (``persist``); a save that fails keeps them for the next try. With several replicas, a
membership change hands records over: ``adopt`` loads them as the store holds them, ``release``
saves and drops them from memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from typing import Final

import structlog

from monitor.alerts.kinds import ALERT_NAMES
from monitor.models import TaskKey
from monitor.store.base import AlertRecord, Store, StoreError

__all__ = ["DELETE_CHUNK", "FIRING", "RESOLVED", "AlertBook"]

log = structlog.get_logger("monitor.alerts")

FIRING: Final = "firing"
RESOLVED: Final = "resolved"
# Deletions per store round trip: records are saved in their final state first, so a deletion
# left for later is harmless, and a mass resolve never holds up the next alert.
DELETE_CHUNK: Final = 200


class AlertBook:
    """The alert records in memory, what of them the store does not hold yet, and the firing
    counts. ``owns`` and ``leads`` say which records are this replica's (a task's while it owns
    the task, the monitor-level ones while it leads); ``on_dropped`` is told the fingerprint of
    every record dropped from memory (the delivery forgets its retries)."""

    def __init__(
        self,
        store: Store,
        *,
        owns: Callable[[TaskKey], bool],
        leads: Callable[[], bool],
        on_dropped: Callable[[str], None] = lambda fp: None,
    ) -> None:
        self.store = store
        self.owns = owns
        self.leads = leads
        self.on_dropped = on_dropped
        self.records: dict[str, AlertRecord] = {}
        self.by_task: dict[TaskKey, dict[str, AlertRecord]] = {}
        self.counts: dict[str, int] = dict.fromkeys(ALERT_NAMES, 0)
        # Set by every change of ``counts``; cleared by whoever reports them.
        self.counts_changed = True
        self.dirty: dict[str, AlertRecord] = {}
        self.gone: set[str] = set()
        self._persist_lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self.records)

    def mine(self, rec: AlertRecord) -> bool:
        return self.owns(rec.task) if rec.task is not None else self.leads()

    def mark(self, rec: AlertRecord) -> None:
        """``rec`` changed: save it with the next ``persist``."""
        self.dirty[rec.fingerprint] = rec

    def _count(self, alertname: str, by: int) -> None:
        self.counts[alertname] = max(0, self.counts.get(alertname, 0) + by)
        self.counts_changed = True

    # --- index ---------------------------------------------------------------------------------

    def index(self, rec: AlertRecord) -> None:
        self.records[rec.fingerprint] = rec
        if rec.task is not None:
            self.by_task.setdefault(rec.task, {})[rec.alertname] = rec

    def _unindex(self, rec: AlertRecord) -> None:
        """Out of both indexes (if it is the record they hold); the delivery forgets it."""
        fp = rec.fingerprint
        if self.records.get(fp) is rec:
            del self.records[fp]
        if rec.task is not None:
            records = self.by_task.get(rec.task)
            if records is not None and records.get(rec.alertname) is rec:
                del records[rec.alertname]
                if not records:
                    del self.by_task[rec.task]
        self.on_dropped(fp)

    def _take(self, rec: AlertRecord) -> None:
        """Index a record as loaded from the store, counting it if it fires."""
        self.index(rec)
        if rec.state == FIRING:
            self._count(rec.alertname, 1)

    # --- changes -------------------------------------------------------------------------------

    def fire(
        self,
        name: str,
        fp: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        now: float,
        task: TaskKey | None,
    ) -> AlertRecord:
        """A new firing record, or a new episode of a resolved one (its resolve perhaps still
        owed), marked to be saved."""
        rec = self.records.get(fp)
        if rec is None:
            rec = AlertRecord(fp, name, labels, annotations, FIRING, now, task=task)
            self.index(rec)
            self.gone.discard(fp)
        else:
            rec.labels, rec.annotations = labels, annotations
            rec.state, rec.starts_at, rec.ends_at = FIRING, now, None
            rec.last_sent_at, rec.resolved_sent = {}, set()
        self._count(name, 1)
        self.dirty[fp] = rec
        return rec

    def resolve(self, rec: AlertRecord, now: float) -> None:
        rec.state, rec.ends_at, rec.resolved_sent = RESOLVED, now, set()
        self._count(rec.alertname, -1)
        self.dirty[rec.fingerprint] = rec

    def forget(self, rec: AlertRecord) -> None:
        """Drop a fully delivered resolved record: saved in its final state, then deleted."""
        self._unindex(rec)
        fp = rec.fingerprint
        self.dirty[fp] = rec
        self.gone.add(fp)

    def drop(self, fp: str) -> None:
        """Forget a record in memory only (the store keeps it)."""
        rec = self.records.get(fp)
        if rec is None:
            return
        if rec.state == FIRING:
            self._count(rec.alertname, -1)
        self._unindex(rec)

    # --- the store -----------------------------------------------------------------------------

    async def load(self) -> list[AlertRecord]:
        """At start: every record of this replica's, as the store holds them."""
        records = [r for r in await self.store.load_alerts() if self.mine(r)]
        for rec in records:
            self._take(rec)
        self.counts_changed = True
        return records

    async def persist(self) -> bool:
        """Save what changed; False (and everything kept for the next try) when that fails."""
        async with self._persist_lock:
            if not self.dirty and not self.gone:
                return True
            dirty = list(self.dirty.values())
            self.dirty = {}
            gone: list[str] = []
            while self.gone and len(gone) < DELETE_CHUNK:
                gone.append(self.gone.pop())
            try:
                if dirty:
                    await self.store.save_alerts(dirty)
                for fp in gone:
                    await self.store.delete_alert(fp)
            except StoreError as exc:
                log.error("alert_state_not_saved", error=str(exc), records=len(dirty))
                for rec in dirty:
                    if self.records.get(rec.fingerprint) is rec:
                        self.dirty.setdefault(rec.fingerprint, rec)
                self.gone.update(fp for fp in gone if fp not in self.records)
                return False
            return True

    # --- handover between replicas -------------------------------------------------------------

    async def adopt(self, keys: Iterable[TaskKey], monitor: bool = False) -> int:
        """Take over the alert records of tasks (and, with ``monitor``, the monitor-level
        ones) as the store holds them now: another replica sent and saved them, so what it
        delivered is not delivered again and a resolve it owed is still owed. Answers how many
        records were taken. Raises StoreError (nothing taken) when the store fails."""
        wanted = set(keys)
        if not wanted and not monitor:
            return 0
        loaded = await self.store.load_alerts()
        taken = 0
        for rec in loaded:
            if (rec.task is None and not monitor) or (
                rec.task is not None and rec.task not in wanted
            ):
                continue
            if rec.fingerprint in self.dirty:
                continue  # changed here since: this replica's version is the newer one
            self.drop(rec.fingerprint)
            self._take(rec)
            taken += 1
        self.counts_changed = True
        return taken

    async def release(self, keys: Iterable[TaskKey], monitor: bool = False) -> None:
        """Hand over the alert records of tasks another replica owns now (and, with
        ``monitor``, the monitor-level ones): saved first, then dropped from memory only."""
        await self.persist()
        gone = set(keys)
        for rec in list(self.records.values()):
            ours = (rec.task is None and monitor) or (rec.task is not None and rec.task in gone)
            if ours and rec.fingerprint not in self.dirty:
                self.drop(rec.fingerprint)
        self.counts_changed = True

    # --- answers -------------------------------------------------------------------------------

    def firing(self) -> list[AlertRecord]:
        """Copies of the firing alerts, oldest first."""
        return [
            # Every field; the mutable ones copied.
            dataclasses.replace(
                r,
                labels=dict(r.labels),
                annotations=dict(r.annotations),
                last_sent_at=dict(r.last_sent_at),
                resolved_sent=set(r.resolved_sent),
            )
            for r in sorted(
                (r for r in self.records.values() if r.state == FIRING),
                key=lambda r: (r.starts_at, r.alertname, r.fingerprint),
            )
        ]
