"""The collection actions of §3: resumable, auto-resume (on demand and as the periodic loop),
cleanup-old, validate-config and stats, all computed from stored data."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from services.persistence.container import bootstrap
from services.persistence.models import PersistentJob
from shared.events.catalog import TaskCompleted, TaskFailed, TaskUpdated
from shared.events.envelope import utcnow
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import Auth, make_settings

from .conftest import SQLITE_ONLY, checkpoint, start

JOBS = "/tasks/persistent-jobs/persistent-jobs"


def stopped_job(client, machine, events, *, progress=50, priority="normal", how="failed"):
    """A job that ran to a checkpoint, then stopped: failed, paused, dead-lettered (interrupted)."""
    task = events.task(priority=priority)
    job_id = start(client, machine, task).json["job_id"]
    checkpoint(client, machine, job_id, "half", {"next_item": progress}, progress_percentage=progress)
    if how == "failed":
        events.core(TaskFailed, task, attempt=1, error_message="disk full", will_retry=False)
    elif how == "interrupted":
        events.core(TaskFailed, task, attempt=1, error_message="lost", will_retry=False, dead_lettered=True)
    elif how == "paused":
        client.post(f"{JOBS}/{job_id}/pause/", headers=Auth().headers(role="operator"))
        checkpoint(client, machine, job_id, "paused-here", {"next_item": progress})
    return task, job_id


class TestResumable:
    def test_lists_stopped_jobs_with_their_last_checkpoint_best_first(self, client, auth, events, machine):
        _, low = stopped_job(client, machine, events, progress=80, priority="low")
        _, high = stopped_job(client, machine, events, progress=20, priority="high", how="interrupted")
        _, paused = stopped_job(client, machine, events, progress=40, how="paused")
        running_task = events.task()
        start(client, machine, running_task)
        body = client.get(f"{JOBS}/resumable/", headers=auth.headers(role="viewer")).json
        assert body["resumable_jobs"] == 3
        assert [j["id"] for j in body["jobs"]] == [high, paused, low]
        first = body["jobs"][0]
        assert first["last_checkpoint"]["checkpoint_data"] == {"next_item": 20}
        assert (first["priority"], first["interruption_reason"]) == ("high", "lost")
        assert body["recommendations"]
        only_low = client.get(f"{JOBS}/resumable/?priority=low&progress_gte=50", headers=auth.headers()).json
        assert [j["id"] for j in only_low["jobs"]] == [low]
        recent = client.get(f"{JOBS}/resumable/?has_recent_checkpoint=false", headers=auth.headers()).json
        assert recent["resumable_jobs"] == 0
        bad = client.get(f"{JOBS}/resumable/?priority=urgent", headers=auth.headers())
        assert bad.status_code == 400 and "priority" in bad.json["field_errors"]


class TestAutoResume:
    def test_resumes_failed_and_interrupted_jobs_but_not_paused_ones(self, client, auth, events, machine):
        _, failed = stopped_job(client, machine, events, progress=60)
        _, interrupted = stopped_job(client, machine, events, progress=30, how="interrupted")
        _, paused = stopped_job(client, machine, events, how="paused")
        _, too_early = stopped_job(client, machine, events, progress=5)
        response = client.post(
            f"{JOBS}/auto-resume/", json={"min_progress_percentage": 10}, headers=auth.headers()
        )
        assert response.status_code == 200, response.json
        body = response.json
        assert (body["resumed_jobs"], body["skipped_jobs"]) == (2, 1)
        outcome = {r["job_id"]: r["status"] for r in body["results"]}
        assert outcome == {failed: "resumed", interrupted: "resumed", too_early: "skipped"}
        assert paused not in outcome
        resumed = {e.data["job_id"]: e.data for e in events.published("job.resumed")}
        assert set(resumed) == {failed, interrupted} and resumed[failed]["automatic"] is True

    def test_the_loop_resumes_with_a_bound_per_job(self, client, auth, events, machine, container):
        task, job_id = stopped_job(client, machine, events)
        assert container.auto_resume()["resumed_jobs"] == 0  # stopped less than a minute ago

        def later():  # the loop's pass a minute after the latest stop
            return utcnow() + timedelta(seconds=61)

        for attempt in range(2, 6):
            assert container.auto_resume(later())["resumed_jobs"] == (1 if attempt <= 4 else 0)
            core_reruns(events, task, attempt)
            start(client, machine, task, attempt=attempt)
            events.core(TaskFailed, task, attempt=attempt, error_message="again", will_retry=False)
        last = container.auto_resume(later())["results"]
        assert last == [{"job_id": job_id, "status": "skipped", "reason": "already auto-resumed 3 times"}]

    def test_an_old_interruption_is_left_to_a_human(self, client, auth, events, machine, container):
        _, job_id = stopped_job(client, machine, events)
        with container.session_factory() as session:
            session.execute(update(PersistentJob).values(interrupted_at=utcnow() - timedelta(hours=30)))
            session.commit()
        result = client.post(f"{JOBS}/auto-resume/", json={}, headers=auth.headers()).json
        assert result["resumed_jobs"] == 0 and "ago" in result["results"][0]["reason"]


def core_reruns(events, task, attempt):
    """core's answer to job.resumed: the task is pending again, with a new attempt."""
    events.core(TaskUpdated, task, changed={"status": "pending", "attempt": attempt}, reason="job resumed")


class TestCleanupOld:
    def finish(self, client, machine, events, container, how):
        task = events.task()
        job_id = start(client, machine, task).json["job_id"]
        checkpoint(client, machine, job_id, "x", {"n": 1})
        if how == "completed":
            events.core(TaskCompleted, task, attempt=1)
        else:
            events.core(TaskFailed, task, attempt=1, error_message="x", will_retry=False)
        with container.session_factory() as session:
            session.execute(
                update(PersistentJob)
                .where(PersistentJob.id == job_id)
                .values(finished_at=utcnow() - timedelta(days=40))
            )
            session.commit()
        return job_id

    def test_deletes_old_finished_jobs_for_real_and_dry_run_only_counts(
        self, client, auth, events, machine, container
    ):
        done = self.finish(client, machine, events, container, "completed")
        failed = self.finish(client, machine, events, container, "failed")
        fresh_task = events.task()
        start(client, machine, fresh_task)
        dry = client.post(
            f"{JOBS}/cleanup-old/", json={"days_old": 30, "dry_run": True}, headers=auth.headers()
        )
        assert dry.status_code == 200, dry.json
        assert dry.json["cleanup_summary"] | {} == {
            **dry.json["cleanup_summary"],
            "jobs_reviewed": 2,
            "jobs_deleted": 1,
            "jobs_preserved": 1,
            "checkpoints_deleted": 1,
        }
        assert dry.json["preserved_reasons"] == {"failed": 1}
        assert dry.json["deleted_job_types"] == {"example.batch": 1}
        assert client.get(f"{JOBS}/{done}/", headers=auth.headers()).status_code == 200
        real = client.post(f"{JOBS}/cleanup-old/", json={"days_old": 30}, headers=auth.headers()).json
        assert real["cleanup_summary"]["jobs_deleted"] == 1
        assert client.get(f"{JOBS}/{done}/", headers=auth.headers()).status_code == 404
        assert client.get(f"{JOBS}/{failed}/", headers=auth.headers()).status_code == 200
        assert (
            client.get(
                f"/tasks/persistent-jobs/checkpoints/?persistent_job={done}", headers=auth.headers()
            ).json["count"]
            == 0
        )

    @SQLITE_ONLY
    def test_is_for_admins(self, client, auth):
        response = client.post(f"{JOBS}/cleanup-old/", json={}, headers=auth.headers(role="operator"))
        assert (response.status_code, response.json["error_code"]) == (403, "PERMISSION_DENIED")


@SQLITE_ONLY
def test_validate_config(client, auth):
    good = client.post(
        f"{JOBS}/validate-config/",
        json={"job_data": {"items": 1000}, "estimated_duration_hours": 2, "checkpoint_frequency": 10},
        headers=auth.headers(),
    ).json
    assert (good["valid"], good["estimated_checkpoints"], good["warnings"]) == (True, 12, [])
    assert good["estimated_storage_mb"] > 0
    bad = client.post(
        f"{JOBS}/validate-config/",
        json={"job_data": {}, "estimated_duration_hours": 200, "checkpoint_frequency": 120},
        headers=auth.headers(),
    ).json
    assert bad["valid"] is False and bad["warnings"] and bad["recommendations"]
    invalid = client.post(
        f"{JOBS}/validate-config/", json={"estimated_duration_hours": -1}, headers=auth.headers()
    )
    assert invalid.status_code == 400 and "estimated_duration_hours" in invalid.json["field_errors"]


def test_stats_are_computed_from_stored_data(client, auth, events, machine):
    task, job_id = stopped_job(client, machine, events, progress=40)
    client.post(f"{JOBS}/{job_id}/resume/", json={}, headers=auth.headers())
    core_reruns(events, task, 2)
    start(client, machine, task, attempt=2)
    events.core(TaskCompleted, task, attempt=2)
    stopped_job(client, machine, events, progress=10)
    body = client.get(f"{JOBS}/stats/?days=7&include_trends=true", headers=auth.headers(role="viewer")).json
    assert body["period"]["days"] == 7
    assert body["totals"]["jobs"] == 2
    assert body["totals"]["by_status"]["completed"] == 1 and body["totals"]["by_status"]["failed"] == 1
    assert body["resume_stats"] | {} == {
        **body["resume_stats"],
        "resumes": 1,
        "jobs_resumed": 1,
        "resumed_then_completed": 1,
        "resume_success_rate": 100.0,
    }
    assert body["checkpoint_stats"]["total"] == 2 and body["checkpoint_stats"]["recovery_points"] == 2
    assert body["failure_analysis"]["failed"] == 1
    assert body["failure_analysis"]["top_reasons"] == [{"reason": "disk full", "jobs": 1}]
    assert sum(day["created"] for day in body["trends"]) == 2


@SQLITE_ONLY
def test_the_auto_resume_loop_runs_by_default_and_can_be_turned_off(database_url):
    def loops(**env):
        built = bootstrap(make_settings("persistence", database_url, **env), bus=InProcessBus())
        names = [loop.name for loop in built.background_loops()]
        built.ctx.dispose()
        return names

    assert "persistence.auto-resume" in loops()  # default: a minute after an accidental stop
    assert "persistence.auto-resume" not in loops(TASKHUB_AUTO_RESUME_SECONDS="0")
