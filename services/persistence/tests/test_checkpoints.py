"""Checkpoints: checksums and sizes, transparent zlib compression (byte for byte), filters,
CRUD, and optimize-storage pruning that keeps every job's newest recovery point."""

from __future__ import annotations

import hashlib
import json
import zlib
from datetime import timedelta

from sqlalchemy import select, update

from services.persistence.models import Checkpoint
from shared.events.catalog import TaskDeleted
from shared.events.envelope import utcnow

from .conftest import SQLITE_ONLY, checkpoint, start

CHECKPOINTS = "/tasks/persistent-jobs/checkpoints"
DATA = {"zeta": "é ünïcode ✓", "next_item": 40, "nested": {"b": [1, 2.5, None, True], "a": "x" * 3000}}


def running_job(client, machine, events):
    task = events.task()
    return task, start(client, machine, task).json["job_id"]


def age(container, days):
    with container.session_factory() as session:
        session.execute(update(Checkpoint).values(created_at=utcnow() - timedelta(days=days)))
        session.commit()


def test_a_saved_checkpoint_has_its_checksum_size_and_updates_the_job(client, auth, events, machine):
    task, job_id = running_job(client, machine, events)
    saved = checkpoint(client, machine, job_id, "batch-4", DATA, progress_percentage=40, completed_steps=4)
    assert saved.status_code == 201, saved.json
    raw = json.dumps(DATA, separators=(",", ":"), ensure_ascii=False).encode()
    canonical = json.dumps(DATA, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert saved.json["checksum"] == hashlib.sha256(canonical).hexdigest()
    assert (saved.json["data_size_bytes"], saved.json["is_compressed"]) == (len(raw), False)
    assert saved.json["persistent_job"] == {"id": job_id, "base_task_id": task["id"]}
    job = client.get(f"/tasks/persistent-jobs/persistent-jobs/{job_id}/", headers=auth.headers()).json
    assert (job["checkpoints_count"], job["current_step"], job["completed_steps"]) == (1, "batch-4", 4)
    assert job["progress_percentage"] == 40 and job["last_checkpoint_at"] and job["can_resume"] is True
    assert [c["id"] for c in job["newest_checkpoints"]] == [saved.json["id"]]
    [event] = events.published("checkpoint.saved")
    assert event.data == {
        "job_id": job_id,
        "base_task": task["id"],
        "task_id": task["task_id"],
        "checkpoint_id": saved.json["id"],
        "step_name": "batch-4",
        "is_recovery_point": True,
        "can_resume": True,
    }


def test_compression_round_trips_byte_for_byte(client, auth, events, machine, container):
    task, job_id = running_job(client, machine, events)
    saved = checkpoint(client, machine, job_id, "big", DATA).json
    with container.session_factory() as session:
        before = session.scalars(select(Checkpoint.payload).where(Checkpoint.id == saved["id"])).one()
    age(container, 10)
    result = client.post(
        f"{CHECKPOINTS}/optimize-storage/", json={"days_old_threshold": 7}, headers=auth.headers()
    ).json["optimization_results"]
    assert result["checkpoints_compressed"] == 1 and result["storage_saved_mb"] > 0
    with container.session_factory() as session:
        stored = session.scalars(select(Checkpoint).where(Checkpoint.id == saved["id"])).one()
        assert stored.is_compressed and stored.stored_size_bytes < stored.data_size_bytes
        assert zlib.decompress(stored.payload) == before  # the very bytes first stored
    shown = client.get(f"{CHECKPOINTS}/{saved['id']}/", headers=auth.headers()).json
    assert shown["checkpoint_data"] == DATA and list(shown["checkpoint_data"]) == list(DATA)
    assert (shown["is_compressed"], shown["is_valid"], shown["checksum"]) == (True, True, saved["checksum"])
    # and a compressed checkpoint is what a resumed handler gets, intact
    assert start(client, machine, task, attempt=2).json["resume_from"]["checkpoint_data"] == DATA


def test_optimize_prunes_beyond_the_limit_but_keeps_the_newest_recovery_point(
    client, auth, events, machine, container
):
    _, job_id = running_job(client, machine, events)
    recovery = checkpoint(client, machine, job_id, "safe", {"n": 0}).json
    scratch = [
        checkpoint(client, machine, job_id, f"scratch-{i}", {"n": i}, is_recovery_point=False).json
        for i in range(1, 4)
    ]
    result = client.post(
        f"{CHECKPOINTS}/optimize-storage/",
        json={"compress_old_checkpoints": False, "max_checkpoints_per_job": 1},
        headers=auth.headers(),
    ).json["optimization_results"]
    assert result["old_checkpoints_archived"] == 2
    left = client.get(
        f"{CHECKPOINTS}/?persistent_job={job_id}&ordering=created_at", headers=auth.headers()
    ).json
    assert [c["id"] for c in left["results"]] == [recovery["id"], scratch[-1]["id"]]
    job = client.get(f"/tasks/persistent-jobs/persistent-jobs/{job_id}/", headers=auth.headers()).json
    assert (job["checkpoints_count"], job["can_resume"]) == (2, True)


@SQLITE_ONLY
def test_optimize_storage_is_for_admins(client, auth):
    response = client.post(f"{CHECKPOINTS}/optimize-storage/", json={}, headers=auth.headers(role="operator"))
    assert (response.status_code, response.json["error_code"]) == (403, "PERMISSION_DENIED")


def test_filters_ordering_and_validation(client, auth, events, machine):
    _, job_a = running_job(client, machine, events)
    _, job_b = running_job(client, machine, events)
    checkpoint(client, machine, job_a, "small", {"n": 1})
    checkpoint(client, machine, job_a, "large", {"blob": "y" * 150_000})
    checkpoint(client, machine, job_b, "small", {"n": 2}, is_recovery_point=False)

    def ids(query):
        response = client.get(f"{CHECKPOINTS}/?{query}", headers=auth.headers())
        assert response.status_code == 200, response.json
        return [(c["persistent_job"]["id"], c["step_name"]) for c in response.json["results"]]

    assert ids(f"persistent_job={job_a}&ordering=created_at") == [(job_a, "small"), (job_a, "large")]
    assert ids("has_large_data=true") == [(job_a, "large")]
    assert ids("step_name=small&ordering=-created_at") == [(job_b, "small"), (job_a, "small")]
    assert ids("is_recovery_point=false") == [(job_b, "small")]
    assert ids("ordering=-data_size_bytes")[0] == (job_a, "large")
    assert ids("search=LAR") == [(job_a, "large")]
    bad = client.get(f"{CHECKPOINTS}/?persistent_job=abc&ordering=nope", headers=auth.headers())
    assert bad.status_code == 400 and set(bad.json["field_errors"]) == {"persistent_job", "ordering"}


def test_edit_and_delete_keep_the_job_consistent(client, auth, events, machine):
    _, job_id = running_job(client, machine, events)
    saved = checkpoint(client, machine, job_id, "one", {"n": 1}).json
    edited = client.patch(
        f"{CHECKPOINTS}/{saved['id']}/", json={"checkpoint_data": {"n": 2}}, headers=auth.headers()
    )
    assert edited.status_code == 200 and edited.json["checkpoint_data"] == {"n": 2}
    assert edited.json["checksum"] != saved["checksum"] and edited.json["is_valid"] is True
    read_only = client.patch(f"{CHECKPOINTS}/{saved['id']}/", json={"checksum": "x"}, headers=auth.headers())
    assert read_only.status_code == 400 and "checksum" in read_only.json["field_errors"]
    assert client.delete(f"{CHECKPOINTS}/{saved['id']}/", headers=auth.headers()).status_code == 204
    job = client.get(f"/tasks/persistent-jobs/persistent-jobs/{job_id}/", headers=auth.headers()).json
    assert (job["checkpoints_count"], job["can_resume"]) == (0, False)
    assert client.get(f"{CHECKPOINTS}/{saved['id']}/", headers=auth.headers()).status_code == 404


@SQLITE_ONLY
def test_a_checkpoint_for_an_unknown_job_is_400(client, auth, machine):
    response = checkpoint(client, machine, 987654, "x", {})
    assert response.status_code == 400 and "persistent_job" in response.json["field_errors"]
    not_object = client.post(
        f"{CHECKPOINTS}/",
        json={"persistent_job": 1, "step_name": "x", "checkpoint_data": [1, 2]},
        headers=auth.headers(role="operator"),
    )
    assert not_object.status_code == 400 and "checkpoint_data" in not_object.json["field_errors"]


def test_task_deleted_drops_the_job_and_its_checkpoints(client, auth, events, machine):
    task, job_id = running_job(client, machine, events)
    saved = checkpoint(client, machine, job_id, "one", {"n": 1}).json
    events.core(TaskDeleted, task)
    assert (
        client.get(f"/tasks/persistent-jobs/persistent-jobs/{job_id}/", headers=auth.headers()).status_code
        == 404
    )
    assert client.get(f"{CHECKPOINTS}/{saved['id']}/", headers=auth.headers()).status_code == 404
    deleted = events.published("job.updated")[-1]
    assert (deleted.data["job_id"], deleted.data["status"], deleted.data["can_resume"]) == (
        job_id,
        "deleted",
        False,
    )
