"""scheduling and core together on one in-process bus, with their loops on threads and core over
real HTTP: a schedule created through the API fires by itself and core shows its run as a
periodic task; run-now answers with core's task; a task is a template right after its creation."""

from __future__ import annotations

import threading

from sqlalchemy import select

from shared.testing.fixtures import OTHER_BRAND, wait_until

from .conftest import P


def core_tasks(platform, auth, **query):
    return platform.core_client.get("/tasks/", query_string=query, headers=auth.headers()).json


def runs_of(platform, auth, schedule):
    return platform.client.get(f"{P}{schedule['id']}/runs/", headers=auth.headers()).json["results"]


def test_an_every_minute_schedule_fires_by_itself_and_core_creates_a_periodic_task(platform, auth, clock):
    created = platform.client.post(
        P,
        json={"task_type": "example.noop", "cron_expression": "* * * * *", "context_data": {"n": 1}},
        headers=auth.headers(),
    )
    assert created.status_code == 201, created.json
    schedule = created.json
    clock.advance(seconds=60)  # the scheduler thread sees 12:01:00 and fires
    page = wait_until(lambda: core_tasks(platform, auth, is_periodic="true")["results"], timeout=10)
    [task] = page
    assert (task["task_type"], task["context_data"], task["is_periodic"]) == ("example.noop", {"n": 1}, True)
    # the run learns its task from core's task.created
    [run] = wait_until(lambda: [r for r in runs_of(platform, auth, schedule) if r["task"]], timeout=10)
    assert (run["task"], run["task_id"], run["planned_time"]) == (
        task["id"],
        task["task_id"],
        "2026-06-01T12:01:00.000Z",
    )
    clock.advance(seconds=60)
    wait_until(lambda: core_tasks(platform, auth, is_periodic="true")["count"] == 2, timeout=10)


def test_execute_now_answers_with_the_task_core_created_once(platform, auth):
    fired: list[str] = []  # the relay deletes what it published: a spy sees the event go out
    spy = platform.scheduling.bus.subscription(
        "test-spy", ["schedule.fired"], lambda d: fired.append(d.message_id)
    )
    threading.Thread(target=spy.run, args=(platform.stop,), daemon=True).start()
    schedule = platform.client.post(
        P, json={"task_type": "example.noop", "cron_expression": "0 0 * * *"}, headers=auth.headers()
    ).json
    answer = platform.client.post(f"{P}{schedule['id']}/execute-now/", headers=auth.headers())
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["periodic_task_id"] == schedule["id"]
    assert body["task"]["is_periodic"] is True and body["task"]["status"] == "pending"
    # the schedule.fired event for the same key reaches core too: still one task
    [event_id] = wait_until(lambda: fired, timeout=10)
    inbox = platform.core.ctx.inbox

    def core_applied() -> bool:
        with platform.core.ctx.engine.connect() as conn:
            return (
                conn.execute(select(inbox.c.event_id).where(inbox.c.event_id == event_id)).first() is not None
            )

    wait_until(core_applied, timeout=10)
    assert core_tasks(platform, auth)["count"] == 1
    assert core_tasks(platform, auth)["results"][0]["id"] == body["task"]["id"]
    # the schedule did not move
    shown = platform.client.get(f"{P}{schedule['id']}/", headers=auth.headers()).json
    assert shown["next_run_at"] == schedule["next_run_at"] and shown["executions_count"] == 1


def test_a_task_is_a_template_right_after_it_was_created(platform, auth):
    task = platform.core_client.post(
        "/tasks/",
        json={"task_type": "example.sleep", "priority": "high", "context_data": {"seconds": 1}},
        headers=auth.headers(),
    ).json
    # no wait for any event: scheduling asks core for the template, with the caller's credentials
    created = platform.client.post(
        P, json={"base_task": task["id"], "cron_expression": "*/5 * * * *"}, headers=auth.headers()
    )
    assert created.status_code == 201, created.json
    assert (created.json["task_type"], created.json["priority"], created.json["context_data"]) == (
        "example.sleep",
        "high",
        {"seconds": 1},
    )
    other = platform.client.post(
        P,
        json={"base_task": task["id"], "cron_expression": "*/5 * * * *"},
        headers=auth.headers(brand=OTHER_BRAND),
    )
    assert (other.status_code, other.json["field_errors"].keys()) == (400, {"base_task"})
    missing = platform.client.post(
        P, json={"base_task": 999999, "cron_expression": "*/5 * * * *"}, headers=auth.headers()
    )
    assert missing.status_code == 400 and "base_task" in missing.json["field_errors"]


def test_a_slot_fired_ahead_waits_in_core_for_its_time(platform, auth, clock):
    from datetime import timedelta

    from shared.events.envelope import iso, utcnow

    # core compares scheduled_for with the real time: put the slot a minute into the real future
    slot = (utcnow() + timedelta(minutes=2)).replace(second=0, microsecond=0)
    clock.set(slot - timedelta(seconds=30))
    platform.client.post(
        P, json={"task_type": "example.noop", "cron_expression": "* * * * *"}, headers=auth.headers()
    )
    clock.set(slot - timedelta(seconds=5))  # within the lookahead: fired now, for `slot`
    [task] = wait_until(lambda: core_tasks(platform, auth, is_periodic="true")["results"], timeout=10)
    assert (task["status"], task["scheduled_for"]) == ("pending", iso(slot))


def test_cancel_previous_cancels_the_active_run_in_core(platform, auth, clock):
    schedule = platform.client.post(
        P,
        json={
            "task_type": "example.noop",
            "cron_expression": "* * * * *",
            "overlap_policy": "cancel_previous",
        },
        headers=auth.headers(),
    ).json
    clock.advance(seconds=60)
    [first] = wait_until(lambda: [r for r in runs_of(platform, auth, schedule) if r["task"]], timeout=10)
    clock.advance(seconds=60)  # the next slot fires while the first task still waits for a worker

    def first_task_status() -> str:
        return platform.core_client.get(f"/tasks/{first['task']}/", headers=auth.headers()).json["status"]

    wait_until(lambda: first_task_status() == "cancelled", timeout=10)
    # the run turns cancelled from core's event; the scheduler records core's answer on its own
    runs = wait_until(
        lambda: [
            r
            for r in runs_of(platform, auth, schedule)
            if r["status"] == "cancelled" and "core answered" in (r["note"] or "")
        ],
        timeout=10,
    )
    assert runs[0]["id"] == first["id"] and "core answered 200" in runs[0]["note"]
