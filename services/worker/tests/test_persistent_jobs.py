"""example.batch as a persistent job: checkpoints durable before it goes on, resume from the given
checkpoint, pause at a checkpoint, a corrupted checkpoint fails at once. The persistence service
is the stand-in of fake_persistence.py (same HTTP contract)."""

from __future__ import annotations

import pytest

from shared.testing.fixtures import JWT_SECRET, wait_until

from .fake_persistence import FakePersistence

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BATCH = {"items": 6, "batch_size": 2, "delay": 0.05}


@pytest.fixture
def persistence():
    with FakePersistence(JWT_SECRET) as fake:
        yield fake


def test_batch_checkpoints_resumes_pauses_and_refuses_corruption(platform, persistence):
    fresh = platform.create("example.batch", context_data=BATCH)
    resumed = platform.create("example.batch", context_data=BATCH)
    paused = platform.create("example.batch", context_data=BATCH)
    corrupted = platform.create("example.batch", context_data=BATCH, max_retries=3)
    persistence.plans[resumed["id"]] = {
        "resume_from": {
            "checkpoint_id": 7,
            "step_name": "batch 2",
            "checkpoint_data": {"next_item": 4, "high_water": 4, "processed_twice": 0, "batches": 2},
        }
    }
    persistence.plans[paused["id"]] = {"pause_at": 2}
    persistence.plans[corrupted["id"]] = {"corrupted": True}
    persistence.unavailable_next = 2  # a blip of the service: retried, invisible to the task
    platform.start_worker("w-batch", TASKHUB_PERSISTENCE_URL=persistence.url)

    done = platform.wait_status(fresh, "completed", "failed")
    assert done["result_data"] == {"processed": 6, "processed_twice": 0}
    steps = [c["step_name"] for c in persistence.checkpoints_of(fresh["id"])]
    assert steps == ["batch 1", "batch 2", "batch 3"]
    assert persistence.checkpoints_of(fresh["id"])[-1]["checkpoint_data"]["next_item"] == 6

    again = platform.wait_status(resumed, "completed", "failed")
    assert again["result_data"] == {"processed": 6, "processed_twice": 0}
    assert [c["step_name"] for c in persistence.checkpoints_of(resumed["id"])] == ["batch 3"]

    # paused at its 2nd checkpoint: the attempt ends, nothing is reported as a result (the
    # persistence service's job.paused moves the task to paused in core)
    wait_until(lambda: len(persistence.checkpoints_of(paused["id"])) == 2, message="2 checkpoints")
    wait_until(
        lambda: paused["task_id"] not in platform.heartbeats("w-batch")[-1]["active_task_ids"],
        message="paused attempt ended",
    )
    assert len(persistence.checkpoints_of(paused["id"])) == 2
    assert not platform.events_of("task.completed", paused) and not platform.events_of("task.failed", paused)

    broken = platform.wait_status(corrupted, "failed")
    assert "CheckpointCorrupted" in broken["error_message"] and broken["retry_count"] == 0

    assert persistence.unavailable_next == 0  # the 503s were met, and retried
    calls = [r for r in persistence.requests if r["body"].get("base_task") == fresh["id"]]
    assert calls and all(r["headers"]["X-Brand-ID"] == "9" for r in calls)
    assert calls[0]["body"]["task_id"] == fresh["task_id"] and calls[0]["body"]["attempt"] == 1
