"""The store contract for alert records and meta values (both backends)."""

from __future__ import annotations

from monitor.models import TaskKey
from monitor.store import Store
from tests.store.helpers import (
    APP,
    Backend,
    alert,
    reopened,
)


class TestAlerts:
    async def test_alert_records_round_trip_through_a_reopen(
        self, store: Store, backend: Backend
    ) -> None:
        firing = alert("fp-1", TaskKey(APP, "任务"), last_sent_at={"am": 1010.5, "hook": 1011.0})
        resolved = alert(
            "fp-2",
            state="resolved",
            ends_at=1100.0,
            last_sent_at={"am": 1100.0},
            resolved_sent={"am", "hook"},
        )
        await store.save_alert(firing)
        await store.save_alert(resolved)
        await store.close()

        again = await reopened(backend)
        try:
            assert await again.load_alerts() == [firing, resolved]
        finally:
            await again.close()

    async def test_saving_a_fingerprint_again_replaces_it_and_delete_forgets_it(
        self, store: Store
    ) -> None:
        await store.save_alerts([alert("fp-1"), alert("fp-2")])
        updated = alert("fp-1", state="resolved", ends_at=2000.0, resolved_sent={"am"})
        await store.save_alert(updated)
        await store.delete_alert("fp-2")
        await store.delete_alert("never-there")
        assert await store.load_alerts() == [updated]


class TestMeta:
    async def test_values_are_kept_and_replaced_and_missing_ones_are_none(
        self, store: Store, backend: Backend
    ) -> None:
        assert await store.meta_get("instance") is None
        await store.meta_set("instance", "a")
        await store.meta_set("instance", "b")
        await store.close()
        again = await reopened(backend)
        try:
            assert await again.meta_get("instance") == "b"
            assert await again.meta_get("schema_version") == backend.schema_version
        finally:
            await again.close()
