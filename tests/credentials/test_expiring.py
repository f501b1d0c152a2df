"""The credentials-expiring alert condition and its annotations."""

from __future__ import annotations

from monitor.alerts.conditions import (
    AccountHealth,
    credentials_expiring_firing,
    observe_credentials,
)
from monitor.alerts.texts import credentials_expiring_annotations


class TestExpiringCondition:
    def test_fires_only_when_refresh_fails_within_the_warning_time(self) -> None:
        health = AccountHealth()
        assert credentials_expiring_firing(health, 1000.0, 900.0) is None  # nothing seen yet
        observe_credentials(health, failing=False, expires_at=1500.0, source="oidc")
        assert credentials_expiring_firing(health, 1000.0, 900.0) is False
        observe_credentials(
            health, failing=True, expires_at=2000.0, source="oidc", error="oidc: STS down"
        )
        assert credentials_expiring_firing(health, 1000.0, 900.0) is False  # 1000 s left
        assert credentials_expiring_firing(health, 1100.0, 900.0) is True
        assert credentials_expiring_firing(health, 2100.0, 900.0) is True  # already expired
        observe_credentials(health, failing=True, expires_at=None, source="env")
        assert credentials_expiring_firing(health, 1100.0, 900.0) is False  # permanent

    def test_the_alert_says_when_which_source_and_why(self) -> None:
        health = AccountHealth()
        observe_credentials(
            health,
            failing=True,
            expires_at=1_700_000_600.0,
            source="oidc",
            error="oidc: STS AssumeRoleWithWebIdentity failed: InternalError",
        )
        text = credentials_expiring_annotations("prod", health, 1_700_000_000.0, 900.0)
        assert text["summary"] == "Credentials of account prod expire soon and cannot be refreshed"
        assert "(source oidc) expire in 10m (at 2023-11-14T22:23:20Z)" in text["description"]
        assert (
            "failed: oidc: STS AssumeRoleWithWebIdentity failed: InternalError"
            in (text["description"])
        )
