"""The local core takes its tuning as BudgetShape.of does, and is sized by that shape."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.ratelimit import LocalRateLimiter, WindowBudget
from monitor.ratelimit.window import BudgetShape


def test_the_core_is_sized_by_the_shape_of_the_same_tuning() -> None:
    tuning: dict[str, Any] = {
        "guard": 0.1,
        "decrease": 0.5,
        "min_fraction": 0.2,
        "recovery_fraction": 0.3,
    }
    budget = WindowBudget(10, 2.0, **tuning)
    assert budget.shape == BudgetShape.of(10, 2.0, **tuning)
    assert budget.shape != BudgetShape.of(10, 2.0)


def test_a_misspelt_tuning_key_is_refused() -> None:
    with pytest.raises(TypeError, match="gaurd"):
        WindowBudget(20, 1.0, gaurd=0.1)  # type: ignore[call-arg]


def test_the_limiter_reports_the_figures_of_the_budget_it_was_given() -> None:
    limiter = LocalRateLimiter(10, 2.0, budget=WindowBudget(10, 2.0, guard=0.5))
    assert (limiter.limit, limiter.window, limiter.guard) == (10, 2.0, 0.5)
    assert limiter.configured_rate == pytest.approx(2.5)
