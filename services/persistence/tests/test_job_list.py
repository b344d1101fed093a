"""The job list: every filter and ordering of §3, pagination, and 400s naming the parameter."""

from __future__ import annotations

from shared.events.catalog import TaskFailed

from .conftest import SQLITE_ONLY, checkpoint, start

JOBS = "/tasks/persistent-jobs/persistent-jobs"


def test_filters_and_ordering(client, auth, events, machine):
    idle = events.task()
    running = events.task(task_type="seo.crawl")
    job_running = start(client, machine, running).json["job_id"]
    checkpoint(client, machine, job_running, "crawl", {"page": 7}, progress_percentage=70)
    done = events.task()
    job_done = start(client, machine, done).json["job_id"]
    checkpoint(client, machine, job_done, "final", {"page": 9}, progress_percentage=30)
    events.core(TaskFailed, done, attempt=1, error_message="x", will_retry=False)
    job_idle = client.get(f"{JOBS}/?base_task={idle['id']}", headers=auth.headers()).json["results"][0]["id"]

    def ids(query):
        response = client.get(f"{JOBS}/?{query}", headers=auth.headers(role="viewer"))
        assert response.status_code == 200, response.json
        return [j["id"] for j in response.json["results"]]

    assert ids("status=running,failed&ordering=progress_percentage") == [job_done, job_running]
    assert ids("can_resume=true&ordering=-progress_percentage") == [job_running, job_done]
    assert ids("has_checkpoints=false") == [job_idle]
    assert ids("current_step=crawl") == [job_running]
    assert ids("progress_gte=50") == [job_running]
    assert ids("progress_lte=50&ordering=created_at") == [job_idle, job_done]
    assert ids("progress_percentage__gt=0&progress_percentage__lt=50") == [job_done]
    assert ids(f"base_task={running['id']},{done['id']}&ordering=created_at") == [job_running, job_done]
    assert ids("search=SEO.") == [job_running]
    assert ids("") == [job_done, job_running, job_idle]  # newest first
    page = client.get(f"{JOBS}/?page_size=2&ordering=created_at", headers=auth.headers()).json
    assert (page["count"], len(page["results"])) == (3, 2) and "page=2" in page["next"]
    assert client.get(f"{JOBS}/?page=9", headers=auth.headers()).status_code == 404


@SQLITE_ONLY
def test_bad_parameters_are_400_naming_them(client, auth):
    response = client.get(
        f"{JOBS}/?status=lost&ordering=priority&progress_gte=lots&base_task=x", headers=auth.headers()
    )
    assert response.status_code == 400
    assert set(response.json["field_errors"]) == {"status", "ordering", "progress_gte", "base_task"}


def test_update_and_delete(client, auth, events, machine):
    task = events.task()
    job = client.get(f"{JOBS}/?base_task={task['id']}", headers=auth.headers()).json["results"][0]
    patched = client.patch(
        f"{JOBS}/{job['id']}/", json={"total_steps": 4, "completed_steps": 1}, headers=auth.headers()
    )
    assert patched.status_code == 200, patched.json
    assert (patched.json["progress_percentage"], patched.json["total_steps"]) == (25, 4)
    read_only = client.put(f"{JOBS}/{job['id']}/", json={"status": "completed"}, headers=auth.headers())
    assert read_only.status_code == 400 and "status" in read_only.json["field_errors"]
    viewer = client.delete(f"{JOBS}/{job['id']}/", headers=auth.headers(role="viewer"))
    assert viewer.status_code == 403
    assert client.delete(f"{JOBS}/{job['id']}/", headers=auth.headers()).status_code == 204
    assert client.get(f"{JOBS}/{job['id']}/", headers=auth.headers()).status_code == 404
