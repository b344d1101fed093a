"""A job's life through the API and the bus: created from task.created, run by a worker over
HTTP (for-task, checkpoints), paused at a checkpoint, resumed from it, restarted; every event
core needs is published, and every state conflict answers with its §3 code."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import update

from services.persistence.models import Checkpoint
from shared.core_client import CoreTasks
from shared.events.catalog import TaskCancelled, TaskCompleted, TaskFailed, TaskStarted, TaskUpdated
from shared.testing.fixtures import OTHER_BRAND

from .conftest import checkpoint, job_of, start, task_created

JOBS = "/tasks/persistent-jobs/persistent-jobs"


def run_to_checkpoints(client, machine, task, batches=2, attempt=1):
    answer = start(client, machine, task, attempt=attempt).json
    saved = []
    for n in range(1, batches + 1):
        response = checkpoint(
            client,
            machine,
            answer["job_id"],
            f"batch-{n}",
            {"next_item": n * 10, "done": list(range(n))},
            progress_percentage=n * 10,
        )
        assert response.status_code == 201, response.json
        saved.append(response.json)
    return answer, saved


class TestCreation:
    def test_a_persistent_task_gets_its_job_from_task_created(self, client, auth, events):
        task = events.task()
        job = job_of(client, auth, task)
        assert job["base_task"] == {
            "id": task["id"],
            "task_id": task["task_id"],
            "task_type": "example.batch",
            "status": "pending",
            "priority": "normal",
        }
        assert (job["status"], job["can_resume"], job["checkpoints_count"]) == ("pending", False, 0)
        [created] = events.published("job.created")
        assert created.data["job_id"] == job["id"] and created.data["base_task"] == task["id"]

    def test_post_makes_an_existing_task_persistent(self, client, auth, events, core):
        """A plain task's events never reach this service: core is asked, with the caller's
        credentials, and the task's row made from its answer."""
        task = core.task(auth, task_type="seo.analysis", priority="high")
        response = client.post(
            f"{JOBS}/",
            json={"base_task": task["id"], "job_data": {"urls": 3}, "total_steps": 3},
            headers=auth.headers(),
        )
        assert response.status_code == 201, response.json
        assert (response.json["job_data"], response.json["total_steps"]) == ({"urls": 3}, 3)
        assert response.json["base_task"] == {
            "id": task["id"],
            "task_id": task["task_id"],
            "task_type": "seo.analysis",
            "status": "pending",
            "priority": "high",
        }
        [created] = events.published("job.created")
        assert (created.data["base_task"], created.data["task_id"]) == (task["id"], task["task_id"])
        again = client.post(f"{JOBS}/", json={"base_task": task["id"]}, headers=auth.headers())
        assert again.status_code == 400 and "base_task" in again.json["field_errors"]

    def test_an_unknown_task_is_400_on_base_task(self, client, auth, core):
        theirs = core.task(auth, brand=OTHER_BRAND)
        for pk in (999999, theirs["id"]):  # missing in core, or another brand's: the same answer
            response = client.post(f"{JOBS}/", json={"base_task": pk}, headers=auth.headers())
            assert response.status_code == 400
            assert response.json["error_code"] == "VALIDATION_ERROR"
            assert response.json["field_errors"]["base_task"] == ["Unknown task."]

    def test_a_task_unknown_here_while_core_is_down_is_503(self, client, auth, container):
        container.core = CoreTasks("http://127.0.0.1:9", timeout=2.0)  # nothing listens there
        response = client.post(f"{JOBS}/", json={"base_task": 999999}, headers=auth.headers())
        assert response.status_code == 503 and response.json["error_code"] == "SERVICE_UNAVAILABLE"

    def test_the_worker_may_start_before_task_created_arrives(self, client, auth, events, machine):
        task: dict[str, Any] = {"id": 424242, "task_id": "task_early000001", "task_type": "example.batch"}
        first = start(client, machine, task)
        assert first.status_code == 200, first.json
        assert first.json["control"] == "run" and first.json["resume_from"] is None
        events.task(id=task["id"], task_id=task["task_id"])  # arrives late: same job, no second one
        again = start(client, machine, task)
        assert again.json["job_id"] == first.json["job_id"]
        assert job_of(client, auth, task)["status"] == "running"
        assert len(events.published("job.created")) == 1

    def test_concurrent_starts_and_task_created_make_one_job(self, client, auth, events, machine):
        task: dict[str, Any] = {"id": 515151, "task_id": "task_race00000001", "task_type": "example.batch"}
        barrier = threading.Barrier(4)
        answers: list = []

        def worker_call():
            barrier.wait()
            answers.append(start(client, machine, task))

        def core_event():
            barrier.wait()
            # set-based and ON CONFLICT: it waits for a racing for-task call, never fails on it
            events.send(task_created(task["id"], task_id=task["task_id"]))

        threads = [threading.Thread(target=worker_call) for _ in range(3)] + [
            threading.Thread(target=core_event)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [a.status_code for a in answers] == [200, 200, 200], [a.json for a in answers]
        assert len({a.json["job_id"] for a in answers}) == 1
        assert job_of(client, auth, task)["id"] == answers[0].json["job_id"]
        assert len(events.published("job.created")) == 1


class TestPauseAndResume:
    def test_pause_is_answered_at_the_next_checkpoint_and_resume_continues_from_it(
        self, client, auth, events, machine
    ):
        task = events.task()
        answer, saved = run_to_checkpoints(client, machine, task)
        assert [c["control"] for c in saved] == ["continue", "continue"]
        job_id = answer["job_id"]

        paused = client.post(f"{JOBS}/{job_id}/pause/", headers=auth.headers())
        assert paused.status_code == 200, paused.json
        assert paused.json["job_id"] == job_id and paused.json["can_resume"] is True
        assert client.get(f"{JOBS}/{job_id}/", headers=auth.headers()).json["status"] == "running"

        third = checkpoint(client, machine, job_id, "batch-3", {"next_item": 30}, progress_percentage=30)
        assert third.json["control"] == "pause"
        detail = client.get(f"{JOBS}/{job_id}/", headers=auth.headers()).json
        assert (detail["status"], detail["progress_percentage"], detail["current_step"]) == (
            "paused",
            30,
            "batch-3",
        )
        [paused_event] = events.published("job.paused")
        assert paused_event.data["checkpoint_id"] == third.json["id"]
        assert paused_event.data["base_task"] == task["id"] and paused_event.data["can_resume"] is True

        again = client.post(f"{JOBS}/{job_id}/pause/", headers=auth.headers())
        assert again.status_code == 409 and again.json["error_code"] == "INVALID_JOB_STATE"

        resumed = client.post(f"{JOBS}/{job_id}/resume/", json={"priority_boost": 1}, headers=auth.headers())
        assert resumed.status_code == 200, resumed.json
        assert resumed.json["resumed_from"]["checkpoint_id"] == third.json["id"]
        assert resumed.json["progress_percentage"] == 30
        [resumed_event] = events.published("job.resumed")
        assert resumed_event.data | {"job_id": job_id} == {
            **resumed_event.data,
            "checkpoint_id": third.json["id"],
            "from_step": "batch-3",
            "restart": False,
            "priority": "high",
            "base_task": task["id"],
            "task_id": task["task_id"],
        }

        # core dispatches attempt 2 with `resume` in the work message; the handler gets the checkpoint
        resume = {k: resumed_event.data[k] for k in ("job_id", "checkpoint_id", "from_step", "restart")}
        run = start(client, machine, task, attempt=2, resume=resume).json
        assert run["control"] == "run"
        assert run["resume_from"] == {
            "checkpoint_id": third.json["id"],
            "step_name": "batch-3",
            "checkpoint_data": {"next_item": 30},
        }
        assert client.get(f"{JOBS}/{job_id}/", headers=auth.headers()).json["status"] == "running"

    def test_resume_from_a_chosen_checkpoint(self, client, auth, events, machine):
        task = events.task()
        answer, saved = run_to_checkpoints(client, machine, task, batches=3)
        events.core(TaskFailed, task, attempt=1, error_message="boom", will_retry=False)
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert (job["status"], job["interruption_reason"]) == ("failed", "boom")
        response = client.post(
            f"{JOBS}/{answer['job_id']}/resume/",
            json={"from_checkpoint": saved[0]["id"]},
            headers=auth.headers(),
        )
        assert response.status_code == 200, response.json
        assert response.json["resumed_from"]["step_name"] == "batch-1"
        run = start(client, machine, task, attempt=2).json  # even without `resume` in the message
        assert run["resume_from"]["checkpoint_id"] == saved[0]["id"]

    def test_a_rerun_after_a_lost_worker_continues_from_the_newest_recovery_point(
        self, client, auth, events, machine
    ):
        task = events.task()
        answer, saved = run_to_checkpoints(client, machine, task, batches=2)
        checkpoint(client, machine, answer["job_id"], "scratch", {"tmp": 1}, is_recovery_point=False)
        run = start(client, machine, task, attempt=2).json  # core re-dispatched: no resume
        assert run["resume_from"]["checkpoint_id"] == saved[-1]["id"]
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert job["status"] == "running" and "interrupted" in job["interruption_reason"]
        assert start(client, machine, task, attempt=1).json["control"] == "cancel"  # the stale attempt

    def test_core_rerunning_a_task_whose_worker_was_lost_interrupts_its_job_until_the_next_attempt_runs(
        self, client, auth, events, machine
    ):
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=1)
        # core decided the worker was lost (its own status change: task.updated with a reason)
        events.core(
            TaskUpdated, task, changed={"status": "pending", "attempt": 2}, reason="worker w9 went offline"
        )
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert (job["status"], job["interruption_reason"], job["interruptions_count"]) == (
            "interrupted",
            "worker w9 went offline",
            1,
        )
        assert client.get(f"{JOBS}/?status=interrupted", headers=auth.headers()).json["count"] == 1
        # the same news again (redelivered with another id) or an older one changes nothing
        events.core(TaskUpdated, task, changed={"status": "pending", "attempt": 2}, reason="again")
        events.core(TaskUpdated, task, changed={"status": "pending", "attempt": 1}, reason="older")
        assert (
            client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json["interruptions_count"] == 1
        )
        events.core(TaskStarted, task, attempt=2, worker_name="w2", started_at="2026-06-01T12:00:05.000Z")
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert (job["status"], job["interruptions_count"]) == ("running", 1)

    def test_an_attempt_the_broker_delivers_again_counts_its_lost_worker_once(
        self, client, auth, events, machine
    ):
        """A killed worker's order goes back to the queue: another worker starts the same attempt
        (delivered a second time) from the newest checkpoint, and the job records the loss."""
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=2)
        again = start(client, machine, task, attempt=1, delivery=2).json
        assert again["control"] == "run" and again["resume_from"]["step_name"] == "batch-2"
        start(client, machine, task, attempt=1, delivery=2)  # the same call repeated: no second loss
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert (job["status"], job["interruptions_count"]) == ("running", 1)
        assert "interrupted" in job["interruption_reason"]

    def test_a_lost_worker_noticed_by_the_next_attempt_first_is_counted_once(
        self, client, auth, events, machine
    ):
        """The new attempt's for-task call may come before core's task.updated: the job runs the
        new attempt and core's late news does not send it back to pending."""
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=1)
        assert start(client, machine, task, attempt=2).json["control"] == "run"
        events.core(
            TaskUpdated, task, changed={"status": "pending", "attempt": 2}, reason="worker w9 went offline"
        )
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert (job["status"], job["interruptions_count"]) == ("running", 1)

    def test_cancelling_the_task_cancels_the_job_at_its_next_checkpoint(self, client, auth, events, machine):
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=1)
        events.core(TaskCancelled, task, previous_status="running", attempt=1)
        assert checkpoint(client, machine, answer["job_id"], "b", {}).json["control"] == "cancel"
        assert job_of(client, auth, task)["status"] == "cancelled"
        assert start(client, machine, task, attempt=1).json["control"] == "cancel"

    def test_a_pause_requested_before_the_handler_starts_is_answered_by_for_task(
        self, client, auth, events, machine
    ):
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=1)
        client.post(f"{JOBS}/{answer['job_id']}/pause/", headers=auth.headers())
        assert start(client, machine, task, attempt=2).json["control"] == "pause"
        assert job_of(client, auth, task)["status"] == "paused"
        assert len(events.published("job.paused")) == 1

    def test_a_late_start_of_the_attempt_its_handler_paused_leaves_the_job_paused(
        self, client, auth, events, machine
    ):
        """A worker reports a short attempt's start late (its hold window): the handler may have
        paused at a checkpoint before core's task.started arrives here. That start is older news
        than the pause and must not make the job running (its resume would then be refused)."""
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=1)
        client.post(f"{JOBS}/{answer['job_id']}/pause/", headers=auth.headers())
        assert checkpoint(client, machine, answer["job_id"], "b", {}).json["control"] == "pause"
        events.core(TaskStarted, task, attempt=1, worker_name="w1", started_at="2026-06-01T12:00:01.000Z")
        assert job_of(client, auth, task)["status"] == "paused"
        resumed = client.post(f"{JOBS}/{answer['job_id']}/resume/", json={}, headers=auth.headers())
        assert resumed.status_code == 200, resumed.json


class TestConflicts:
    def test_resume_pause_restart_refuse_what_their_state_forbids(self, client, auth, events, machine):
        task = events.task()
        job_id = job_of(client, auth, task)["id"]
        pending_pause = client.post(f"{JOBS}/{job_id}/pause/", headers=auth.headers())
        assert (pending_pause.status_code, pending_pause.json["error_code"]) == (409, "INVALID_JOB_STATE")
        assert pending_pause.json["current_status"] == "pending"
        start(client, machine, task)
        running_resume = client.post(f"{JOBS}/{job_id}/resume/", json={}, headers=auth.headers())
        assert (running_resume.status_code, running_resume.json["error_code"]) == (409, "JOB_NOT_RESUMABLE")
        running_restart = client.post(f"{JOBS}/{job_id}/restart/", json={}, headers=auth.headers())
        assert (running_restart.status_code, running_restart.json["error_code"]) == (409, "INVALID_JOB_STATE")
        running_delete = client.delete(f"{JOBS}/{job_id}/", headers=auth.headers())
        assert (running_delete.status_code, running_delete.json["error_code"]) == (409, "INVALID_JOB_STATE")
        events.core(TaskFailed, task, attempt=1, error_message="early", will_retry=False)
        no_checkpoint = client.post(f"{JOBS}/{job_id}/resume/", json={}, headers=auth.headers())
        assert (no_checkpoint.status_code, no_checkpoint.json["error_code"]) == (409, "JOB_NOT_RESUMABLE")

    def test_a_completed_job_cannot_be_resumed_or_restarted(self, client, auth, events, machine):
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=1)
        events.core(TaskCompleted, task, attempt=1)
        job = client.get(f"{JOBS}/{answer['job_id']}/", headers=auth.headers()).json
        assert (job["status"], job["can_resume"], job["progress_percentage"]) == ("completed", False, 100)
        resume = client.post(f"{JOBS}/{answer['job_id']}/resume/", json={}, headers=auth.headers())
        assert resume.json["error_code"] == "JOB_NOT_RESUMABLE"
        restart = client.post(f"{JOBS}/{answer['job_id']}/restart/", json={}, headers=auth.headers())
        assert restart.json["error_code"] == "INVALID_JOB_STATE"


class TestCorruption:
    def tamper(self, container, checkpoint_id):
        with container.session_factory() as session:
            session.execute(
                update(Checkpoint).where(Checkpoint.id == checkpoint_id).values(payload=b'{"next_item":999}')
            )
            session.commit()

    def test_a_tampered_checkpoint_is_refused_on_resume_and_on_for_task(
        self, client, auth, events, machine, container
    ):
        task = events.task()
        answer, saved = run_to_checkpoints(client, machine, task, batches=2)
        self.tamper(container, saved[-1]["id"])
        refused = start(client, machine, task, attempt=2)
        assert (refused.status_code, refused.json["error_code"]) == (409, "CHECKPOINT_CORRUPTED")
        events.core(TaskFailed, task, attempt=2, error_message="x", will_retry=False)
        resume = client.post(f"{JOBS}/{answer['job_id']}/resume/", json={}, headers=auth.headers())
        assert (resume.status_code, resume.json["error_code"]) == (409, "CHECKPOINT_CORRUPTED")
        assert events.published("job.resumed") == []
        shown = client.get(
            f"/tasks/persistent-jobs/checkpoints/{saved[-1]['id']}/", headers=auth.headers()
        ).json
        assert (shown["is_valid"], shown["checkpoint_data"]) == (False, None)
        older = client.post(
            f"{JOBS}/{answer['job_id']}/resume/",
            json={"from_checkpoint": saved[0]["id"]},
            headers=auth.headers(),
        )
        assert older.status_code == 200, older.json


class TestRestart:
    def test_restart_without_preserved_checkpoints_starts_from_zero(self, client, auth, events, machine):
        task = events.task()
        answer, _ = run_to_checkpoints(client, machine, task, batches=2)
        events.core(TaskCancelled, task, previous_status="running", attempt=1)
        response = client.post(f"{JOBS}/{answer['job_id']}/restart/", json={}, headers=auth.headers())
        assert response.status_code == 200, response.json
        assert (response.json["checkpoints_deleted"], response.json["progress_percentage"]) == (2, 0)
        [restarted] = events.published("job.restarted")
        assert (restarted.data["restart"], restarted.data["checkpoint_id"], restarted.data["can_resume"]) == (
            True,
            None,
            False,
        )
        resume = {k: restarted.data[k] for k in ("job_id", "checkpoint_id", "from_step", "restart")}
        run = start(client, machine, task, attempt=2, resume=resume).json
        assert (run["control"], run["resume_from"]) == ("run", None)

    def test_restart_from_a_preserved_step(self, client, auth, events, machine):
        task = events.task()
        answer, saved = run_to_checkpoints(client, machine, task, batches=2)
        events.core(TaskFailed, task, attempt=1, error_message="x", will_retry=False)
        response = client.post(
            f"{JOBS}/{answer['job_id']}/restart/",
            json={"preserve_checkpoints": True, "from_step": "batch-1", "reset_progress": False},
            headers=auth.headers(),
        )
        assert response.status_code == 200, response.json
        assert response.json["from_checkpoint"] == saved[0]["id"]
        [restarted] = events.published("job.restarted")
        resume = {k: restarted.data[k] for k in ("job_id", "checkpoint_id", "from_step", "restart")}
        run = start(client, machine, task, attempt=2, resume=resume).json
        assert run["resume_from"]["step_name"] == "batch-1"
