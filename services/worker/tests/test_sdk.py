"""The SDK's rules and the worker's scheduling arithmetic (no servers needed)."""

from __future__ import annotations

from collections import Counter

import pytest

from services.worker.rotation import PriorityRotation
from services.worker.sdk import NonRetryableError, Registry, RetryPolicy, TaskSpec, registry, task


def test_every_example_type_is_registered_with_its_defaults():
    import services.worker.examples  # noqa: F401 - registers them

    names = {spec.name for spec in registry.specs()}
    assert {"example.noop", "example.sleep", "example.fail", "example.flaky", "example.batch"} <= names
    spec = registry.get("example.batch")
    assert spec is not None and spec.describe()["persistent"] is True


def test_backoff_is_full_jitter_capped_and_exponential():
    policy = RetryPolicy(base=1, factor=2, cap=300)
    for retry_count, ceiling in [(0, 1), (1, 2), (3, 8), (20, 300)]:
        delays = [policy.delay(retry_count) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the whole range, not a fixed delay
    assert RetryPolicy(base=1, jitter=False).delay(3) == 8


def test_non_retryable_errors():
    policy = RetryPolicy(non_retryable=(ValueError,))
    assert not policy.retryable(ValueError("bad input"))
    assert not policy.retryable(NonRetryableError("never"))
    assert policy.retryable(RuntimeError("flaky network"))


def test_decorator_refuses_bad_declarations():
    with pytest.raises(ValueError):
        task("Bad Name")
    with pytest.raises(ValueError):
        task("ok.name", priority="urgent")
    with pytest.raises(ValueError):
        task("ok.name", timeout_minutes=0)
    other = Registry()
    other.add(TaskSpec("dup.type", lambda ctx: {}))
    with pytest.raises(ValueError, match="already registered"):
        other.add(TaskSpec("dup.type", lambda ctx: {}))


def test_rotation_serves_priorities_8_4_2_1_and_never_starves_low():
    rotation = PriorityRotation(["low", "normal", "high", "critical"])
    picks = Counter(rotation.pick() for _ in range(150))
    assert picks == {"critical": 80, "high": 40, "normal": 20, "low": 10}
    first_15 = [rotation.order()[0] for _ in range(15)]
    assert "low" in first_15


def test_rotation_over_a_subset_of_queues():
    rotation = PriorityRotation(["low", "high"])
    assert Counter(rotation.pick() for _ in range(50)) == {"high": 40, "low": 10}
    with pytest.raises(ValueError):
        PriorityRotation(["urgent"])


def test_a_slot_asks_the_rotations_pick_first_then_from_critical_down():
    rotation = PriorityRotation(["critical", "high", "normal", "low"])
    assert rotation.order() == ["critical", "high", "normal", "low"]
    orders = [rotation.order() for _ in range(14)]
    low_first = next(o for o in orders if o[0] == "low")
    assert low_first == ["low", "critical", "high", "normal"]
