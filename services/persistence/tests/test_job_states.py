"""Job states: handlers upsert them by job, operators list, read and edit them."""

from __future__ import annotations

from .conftest import SQLITE_ONLY, start

STATES = "/tasks/persistent-jobs/job-states"


def test_a_handler_upserts_its_job_state_and_operators_read_it(client, auth, events, machine):
    task = events.task()
    job_id = start(client, machine, task).json["job_id"]
    first = client.post(
        f"{STATES}/",
        json={"persistent_job": job_id, "pages_status": {"p1": "done", "p2": "pending"}, "max_retries": 2},
        headers=machine.for_job(job_id),
    )
    assert first.status_code == 201, first.json
    second = client.post(
        f"{STATES}/",
        json={"persistent_job": job_id, "retry_count": 2, "last_error_message": "timeout on p2"},
        headers=machine.for_job(job_id),
    )
    assert second.status_code == 200 and second.json["id"] == first.json["id"]
    assert second.json | {} == {
        **second.json,
        "pages_status": {"p1": "done", "p2": "pending"},
        "retry_count": 2,
        "max_retries": 2,
        "can_retry": False,
        "last_error_message": "timeout on p2",
        "persistent_job": {"id": job_id, "base_task_id": task["id"]},
    }
    listed = client.get(f"{STATES}/?persistent_job={job_id}", headers=auth.headers(role="viewer")).json
    assert [s["id"] for s in listed["results"]] == [first.json["id"]]
    assert client.get(f"{STATES}/?can_retry=true", headers=auth.headers()).json["count"] == 0
    edited = client.patch(f"{STATES}/{first.json['id']}/", json={"max_retries": 5}, headers=auth.headers())
    assert edited.status_code == 200 and edited.json["can_retry"] is True
    detail = client.get(f"/tasks/persistent-jobs/persistent-jobs/{job_id}/", headers=auth.headers()).json
    assert detail["job_state"]["id"] == first.json["id"]


@SQLITE_ONLY
def test_unknown_job_and_read_only_fields_are_400(client, auth, machine):
    unknown = client.post(f"{STATES}/", json={"persistent_job": 424242}, headers=auth.headers())
    assert unknown.status_code == 400 and "persistent_job" in unknown.json["field_errors"]
    assert client.get(f"{STATES}/424242/", headers=auth.headers()).status_code == 404


@SQLITE_ONLY
def test_viewers_cannot_write(client, auth, events, machine):
    job_id = start(client, machine, events.task()).json["job_id"]
    response = client.post(f"{STATES}/", json={"persistent_job": job_id}, headers=auth.headers(role="viewer"))
    assert (response.status_code, response.json["error_code"]) == (403, "PERMISSION_DENIED")
