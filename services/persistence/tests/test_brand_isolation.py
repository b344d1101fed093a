"""Brand isolation on every endpoint: another brand's job, checkpoint or state is a 404 exactly
like a missing one, lists and stats never show it, and writes naming it are refused."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events.catalog import TaskFailed
from shared.testing.fixtures import OTHER_BRAND

from .conftest import SQLITE_ONLY, checkpoint, start

P = "/tasks/persistent-jobs"


@pytest.fixture
def theirs(client, events, machine):
    """A job of the other brand, with a checkpoint and a state, stopped (failed) and resumable."""
    task = events.task(brand=OTHER_BRAND)
    job_id = start(client, machine, task, brand=OTHER_BRAND).json["job_id"]
    saved = checkpoint(client, machine, job_id, "b1", {"n": 1}, brand=OTHER_BRAND).json
    state = client.post(
        f"{P}/job-states/", json={"persistent_job": job_id}, headers=machine.for_job(job_id, OTHER_BRAND)
    ).json
    events.core(TaskFailed, task, brand=OTHER_BRAND, attempt=1, error_message="x", will_retry=False)
    return {"task": task, "job": job_id, "checkpoint": saved["id"], "state": state["id"]}


def test_another_brands_objects_are_404_like_missing_ones(client, auth, theirs):
    headers = auth.headers()
    body: dict[str, Any] | None
    for method, url, body in [
        ("get", f"{P}/persistent-jobs/{theirs['job']}/", None),
        ("patch", f"{P}/persistent-jobs/{theirs['job']}/", {"job_data": {}}),
        ("put", f"{P}/persistent-jobs/{theirs['job']}/", {"job_data": {}}),
        ("delete", f"{P}/persistent-jobs/{theirs['job']}/", None),
        ("post", f"{P}/persistent-jobs/{theirs['job']}/resume/", {}),
        ("post", f"{P}/persistent-jobs/{theirs['job']}/pause/", None),
        ("post", f"{P}/persistent-jobs/{theirs['job']}/restart/", {}),
        ("get", f"{P}/checkpoints/{theirs['checkpoint']}/", None),
        ("patch", f"{P}/checkpoints/{theirs['checkpoint']}/", {"step_name": "x"}),
        ("delete", f"{P}/checkpoints/{theirs['checkpoint']}/", None),
        ("get", f"{P}/job-states/{theirs['state']}/", None),
        ("patch", f"{P}/job-states/{theirs['state']}/", {"retry_count": 1}),
    ]:
        response = getattr(client, method)(url, json=body, headers=headers)
        assert response.status_code == 404, (method, url, response.json)
        assert response.json["error_code"] == "NOT_FOUND"
        assert response.json["detail"].endswith("not found or access denied")


def test_lists_and_views_never_show_another_brand(client, auth, theirs):
    headers = auth.headers()
    for url in (
        f"{P}/persistent-jobs/",
        f"{P}/persistent-jobs/?base_task={theirs['task']['id']}",
        f"{P}/checkpoints/",
        f"{P}/checkpoints/?persistent_job={theirs['job']}",
        f"{P}/job-states/",
    ):
        assert client.get(url, headers=headers).json["count"] == 0, url
    assert client.get(f"{P}/persistent-jobs/resumable/", headers=headers).json["resumable_jobs"] == 0
    stats = client.get(f"{P}/persistent-jobs/stats/", headers=headers).json
    assert stats["totals"]["jobs"] == 0 and stats["checkpoint_stats"]["total"] == 0
    assert client.post(f"{P}/persistent-jobs/auto-resume/", json={}, headers=headers).json["results"] == []
    cleanup = client.post(f"{P}/persistent-jobs/cleanup-old/", json={"days_old": 0}, headers=headers).json
    assert cleanup["cleanup_summary"]["jobs_reviewed"] == 0
    optimized = client.post(
        f"{P}/checkpoints/optimize-storage/",
        json={"days_old_threshold": 0, "max_checkpoints_per_job": 1},
        headers=headers,
    ).json
    assert optimized["optimization_results"]["total_checkpoints_processed"] == 0
    # while its own brand sees it all
    mine = auth.headers(brand=OTHER_BRAND)
    assert client.get(f"{P}/persistent-jobs/{theirs['job']}/", headers=mine).status_code == 200
    assert client.get(f"{P}/checkpoints/{theirs['checkpoint']}/", headers=mine).json["is_valid"] is True


def test_writes_naming_another_brands_objects_are_refused(client, auth, machine, theirs):
    job = client.post(
        f"{P}/persistent-jobs/", json={"base_task": theirs["task"]["id"]}, headers=auth.headers()
    )
    assert job.status_code == 400 and "base_task" in job.json["field_errors"]
    saved = checkpoint(client, machine, theirs["job"], "x", {})
    assert saved.status_code == 400 and "persistent_job" in saved.json["field_errors"]
    state = client.post(f"{P}/job-states/", json={"persistent_job": theirs["job"]}, headers=auth.headers())
    assert state.status_code == 400 and "persistent_job" in state.json["field_errors"]
    run = start(client, machine, theirs["task"], attempt=2)
    assert run.status_code == 400 and "base_task" in run.json["field_errors"]


@SQLITE_ONLY
def test_a_brand_the_token_does_not_list_is_403(client, auth):
    response = client.get(f"{P}/persistent-jobs/", headers={**auth.headers(), "X-Brand-ID": "77"})
    assert (response.status_code, response.json["error_code"]) == (403, "BRAND_ACCESS_DENIED")


@SQLITE_ONLY
def test_only_the_attempt_grant_core_minted_opens_a_job(client, auth, events, machine):
    """Issue 13 finding 2: `for-task` took any operator token, for any id (even a future one):
    another brand could claim the next core ids and make their persistent jobs fail for good."""
    future = {"id": 999_999, "task_id": "task_future", "task_type": "example.batch"}
    for role in ("operator", "admin"):
        squat = start_as(client, future, auth.headers(role=role))
        assert (squat.status_code, squat.json["error_code"]) == (403, "PERMISSION_DENIED")
    # a grant names one task and one attempt: it opens nothing else
    task = events.task()
    other = start_as(client, future, machine(task=task["id"]))
    assert (other.status_code, other.json["error_code"]) == (403, "PERMISSION_DENIED")
    later = start_as(client, task, machine(task=task["id"], attempt=1), attempt=2)
    assert later.status_code == 403
    # and only in its own brand
    elsewhere = start_as(client, task, {**machine(task=task["id"]), "X-Brand-ID": "10"})
    assert (elsewhere.status_code, elsewhere.json["error_code"]) == (403, "BRAND_ACCESS_DENIED")
    assert start(client, machine, task).status_code == 200


@SQLITE_ONLY
def test_a_grant_saves_checkpoints_of_its_own_job_only(client, auth, events, machine):
    mine_task, other_task = events.task(), events.task()
    mine = start(client, machine, mine_task).json["job_id"]
    other = start(client, machine, other_task).json["job_id"]
    body = {"persistent_job": other, "step_name": "x", "checkpoint_data": {}}
    stolen = client.post(f"{P}/checkpoints/", json=body, headers=machine.for_job(mine))
    assert stolen.status_code == 400 and "persistent_job" in stolen.json["field_errors"]
    state = client.post(f"{P}/job-states/", json={"persistent_job": other}, headers=machine.for_job(mine))
    assert state.status_code == 400 and "persistent_job" in state.json["field_errors"]
    # a grant calls what a worker needs, nothing else
    for method, path in (("get", f"{P}/persistent-jobs/"), ("post", f"{P}/persistent-jobs/{mine}/pause/")):
        response = getattr(client, method)(path, headers=machine.for_job(mine))
        assert (response.status_code, response.json["error_code"]) == (403, "PERMISSION_DENIED")


def start_as(client, task, headers, attempt=1):
    body = {
        "base_task": task["id"],
        "task_id": task["task_id"],
        "task_type": "example.batch",
        "attempt": attempt,
    }
    return client.post(f"{P}/persistent-jobs/for-task/", json=body, headers=headers)
