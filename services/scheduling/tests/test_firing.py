"""The scheduler fires each slot once, in the schedule's own time: runs and schedule.fired events
as core would receive them, misfire and overlap policies, calendars, limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.scheduling.models import ScheduleRun
from shared.events.catalog import TaskCompleted, TaskStarted
from tests.integration.event_schemas import validator

from .conftest import P, core_event, deliver, sqlite_only, task_created


def fired_events(container):
    outbox = container.ctx.outbox
    with container.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.body).where(outbox.c.routing_key == "schedule.fired").order_by(outbox.c.id)
        ).all()
    events = [json.loads(r.body) for r in rows]
    check = validator("schedule.fired")
    assert check is not None, "docs/events/ has schedule.fired"
    for event in events:  # every event published is checked against the contract (docs/events/)
        errors = [e.message for e in check.iter_errors(event)]
        assert not errors, errors
    return events


def runs(container, **where):
    with container.session_factory() as session:
        stmt = select(ScheduleRun).order_by(ScheduleRun.planned_time, ScheduleRun.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(ScheduleRun, key) == value)
        return list(session.scalars(stmt))


def get(client, auth, schedule):
    return client.get(f"{P}{schedule['id']}/", headers=auth.headers()).json


def at(clock, text):
    clock.set(datetime.fromisoformat(text).replace(tzinfo=UTC))


class TestFiring:
    def test_a_due_slot_fires_once_with_what_core_needs(self, client, auth, clock, scheduler, make_schedule):
        schedule = make_schedule(
            context_data={"a": 1}, priority="high", description="nightly", timezone="Europe/Paris"
        )
        assert schedule["next_run_at"] == "2026-06-01T12:01:00.000Z"
        assert scheduler.tick() == 0
        clock.advance(seconds=60)
        assert scheduler.tick() == 1
        assert scheduler.tick() == 0
        [event] = fired_events(scheduler.container)
        assert event["brand_id"] == 9
        assert event["data"]["periodic_task_id"] == schedule["id"]
        assert event["data"]["planned_time"] == "2026-06-01T12:01:00.000Z"
        assert event["data"]["idempotency_key"] == f"periodic:{schedule['id']}:2026-06-01T12:01:00.000Z"
        assert event["data"]["create_task"] == {
            "task_type": "example.noop",
            "priority": "high",
            "description": "nightly",
            "context_data": {"a": 1},
            "max_retries": None,
            "timeout_minutes": None,
            "brand_name": "Humari",
            "created_by_id": "1",
            "created_by_username": "martin",
        }
        shown = get(client, auth, schedule)
        assert (shown["executions_count"], shown["last_run_status"], shown["next_run_at"]) == (
            1,
            "running",
            "2026-06-01T12:02:00.000Z",
        )
        history = client.get(f"{P}{schedule['id']}/runs/", headers=auth.headers()).json["results"]
        assert [(r["planned_time"], r["status"], r["trigger"]) for r in history] == [
            ("2026-06-01T12:01:00.000Z", "pending", "scheduler")
        ]

    def test_run_outcomes_from_core_events_feed_the_schedule(
        self, client, auth, clock, container, scheduler, make_schedule
    ):
        schedule = make_schedule()
        clock.advance(seconds=60)
        scheduler.tick()
        key = fired_events(container)[0]["data"]["idempotency_key"]
        deliver(container, task_created(77, key))
        deliver(container, core_event(TaskStarted, 77, started_at="2026-06-01T12:01:02.000Z"))
        assert get(client, auth, schedule)["last_run_status"] == "running"
        deliver(container, core_event(TaskCompleted, 77))
        [run] = client.get(f"{P}{schedule['id']}/runs/", headers=auth.headers()).json["results"]
        assert (run["task"], run["task_id"], run["status"], run["start_delay_seconds"]) == (
            77,
            "task_77",
            "success",
            2.0,
        )
        assert get(client, auth, schedule)["last_run_status"] == "success"
        # a late, older event never moves the run backwards
        deliver(container, core_event(TaskStarted, 77))
        assert runs(container)[0].status == "success"

    def test_jitter_delays_within_its_bound_and_is_the_same_on_every_replica(
        self, client, auth, make_schedule
    ):
        schedule = make_schedule(jitter_seconds=30, cron_expression="0 * * * *")
        next_run = datetime.fromisoformat(schedule["next_run_at"].replace("Z", "+00:00"))
        planned = datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
        assert planned <= next_run <= planned + timedelta(seconds=30)
        assert get(client, auth, schedule)["next_run_at"] == schedule["next_run_at"]

    def test_max_executions_deactivates(self, client, auth, clock, scheduler, make_schedule):
        schedule = make_schedule(max_executions=2)
        for _ in range(3):
            clock.advance(seconds=60)
            scheduler.tick()
        shown = get(client, auth, schedule)
        assert (shown["executions_count"], shown["is_active"], shown["next_run_at"]) == (2, False, None)

    def test_end_date_deactivates(self, client, auth, clock, scheduler, make_schedule):
        schedule = make_schedule(end_date="2026-06-01T12:02:30Z", misfire_policy="run_all")
        clock.advance(minutes=5)
        scheduler.tick()
        shown = get(client, auth, schedule)
        assert (shown["executions_count"], shown["is_active"]) == (2, False)

    def test_start_date_is_the_first_slot(self, make_schedule):
        schedule = make_schedule(cron_expression="0 9 * * *", start_date="2026-06-10T00:00:00Z")
        assert schedule["next_run_at"] == "2026-06-10T09:00:00.000Z"


class TestMisfire:
    """The scheduler was down from 12:00:30 to 12:05:40: slots 12:01 … 12:05 were missed."""

    @pytest.mark.parametrize(
        ("policy", "window", "expected"),
        [
            ("skip", 60, []),
            ("run_once", 60, ["12:05"]),
            ("run_all", 60, ["12:01", "12:02", "12:03", "12:04", "12:05"]),
            ("run_all", 3, ["12:03", "12:04", "12:05"]),
        ],
    )
    @sqlite_only
    def test_restart_after_five_minutes(
        self, client, auth, clock, container, scheduler, make_schedule, policy, window, expected
    ):
        schedule = make_schedule(misfire_policy=policy, catchup_window_minutes=window)
        at(clock, "2026-06-01T12:05:40")
        scheduler.tick()
        fired = [r.planned_time.strftime("%H:%M") for r in runs(container)]
        assert fired == expected
        assert {r.trigger for r in runs(container)} <= {"catchup"}
        shown = get(client, auth, schedule)
        assert shown["next_run_at"] == "2026-06-01T12:06:00.000Z"
        assert shown["missed_runs_count"] == 5 - len(expected)
        clock.advance(seconds=21)  # 12:06:01: back to normal
        scheduler.tick()
        assert runs(container)[-1].planned_time.strftime("%H:%M") == "12:06"
        assert runs(container)[-1].trigger == "scheduler"

    def test_a_slot_within_the_grace_period_is_on_time(self, clock, container, scheduler, make_schedule):
        make_schedule(misfire_policy="skip")
        at(clock, "2026-06-01T12:01:20")
        scheduler.tick()
        assert [r.trigger for r in runs(container)] == ["scheduler"]


class TestOverlap:
    def _start(self, container, run, task_pk):
        deliver(container, task_created(task_pk, run.idempotency_key), core_event(TaskStarted, task_pk))

    def test_skip_while_the_previous_run_is_active(
        self, client, auth, clock, container, scheduler, make_schedule
    ):
        schedule = make_schedule(overlap_policy="skip")
        clock.advance(seconds=60)
        scheduler.tick()
        self._start(container, runs(container)[0], 501)
        clock.advance(seconds=60)
        scheduler.tick()
        assert [(r.status, r.overlapped) for r in runs(container)] == [("running", False), ("skipped", True)]
        assert len(fired_events(container)) == 1
        analysis = client.get(f"{P}performance-analysis/", headers=auth.headers()).json["schedules"]
        assert analysis[0]["periodic_task_id"] == schedule["id"]
        assert (analysis[0]["overlaps_seen"], analysis[0]["skipped_for_overlap"]) == (1, 1)

    def test_cancel_previous_asks_core_to_cancel_with_a_machine_token(
        self, clock, container, scheduler, make_schedule
    ):
        make_schedule(overlap_policy="cancel_previous")
        clock.advance(seconds=60)
        scheduler.tick()
        self._start(container, runs(container)[0], 502)
        clock.advance(seconds=60)
        scheduler.tick()
        first, second = runs(container)
        assert first.cancel_requested_at is not None and second.status == "pending" and second.overlapped
        calls: list[tuple[int, int]] = []

        def cancel_task(token: str, brand: int, pk: int) -> int:
            calls.append((brand, pk))
            return 200

        container.core.cancel_task = cancel_task
        assert scheduler.request_cancellations() == 1
        assert calls == [(9, 502)]
        assert runs(container)[0].cancel_requested_at is None

    def test_allow_fires_and_records_the_overlap(self, clock, container, scheduler, make_schedule):
        make_schedule()
        clock.advance(seconds=60)
        scheduler.tick()
        self._start(container, runs(container)[0], 503)
        clock.advance(seconds=60)
        scheduler.tick()
        assert [r.status for r in runs(container)] == ["running", "pending"]
        assert len(fired_events(container)) == 2


class TestCalendars:
    def test_an_excluded_date_suppresses_the_run(
        self, client, auth, clock, container, scheduler, make_schedule
    ):
        calendar = client.post(
            "/tasks/scheduled/calendars/",
            json={"name": "holidays", "default_timezone": "Europe/Paris", "excluded_dates": ["2026-06-02"]},
            headers=auth.headers(),
        ).json
        schedule = make_schedule(
            cron_expression="0 9 * * *", timezone="Europe/Paris", calendars=[calendar["id"]]
        )
        # 1 June 09:00 Paris has passed at 12:00 UTC; 2 June is excluded: next is 3 June 07:00 UTC
        assert schedule["next_run_at"] == "2026-06-03T07:00:00.000Z"
        at(clock, "2026-06-02T07:00:30")
        scheduler.tick()
        assert runs(container) == []
        at(clock, "2026-06-03T07:00:10")
        scheduler.tick()
        assert [r.planned_time.isoformat() for r in runs(container)] == ["2026-06-03T07:00:00+00:00"]

    def test_excluding_a_date_later_moves_the_next_run(self, client, auth, make_schedule):
        schedule = make_schedule(cron_expression="0 9 * * *")
        assert schedule["next_run_at"] == "2026-06-02T09:00:00.000Z"
        calendar = client.post(
            "/tasks/scheduled/calendars/", json={"name": "freeze"}, headers=auth.headers()
        ).json
        client.post(
            f"/tasks/scheduled/calendars/{calendar['id']}/tasks/",
            json={"periodic_task": schedule["id"]},
            headers=auth.headers(),
        )
        client.patch(
            f"/tasks/scheduled/calendars/{calendar['id']}/",
            json={"excluded_dates": [{"start": "2026-06-02", "end": "2026-06-04"}]},
            headers=auth.headers(),
        )
        assert get(client, auth, schedule)["next_run_at"] == "2026-06-05T09:00:00.000Z"


@sqlite_only
class TestDaylightSaving:
    """A schedule driven through a whole DST day by the scheduler: every expected slot fires
    once, none twice (the instant-level rules are in test_cron.py)."""

    @pytest.mark.parametrize(
        ("tz", "cron", "start", "expected_utc"),
        [
            # Paris spring (29 March 2026, 02:00 -> 03:00): 02:30 runs once, at 03:00 local
            ("Europe/Paris", "30 2 * * *", "2026-03-28T12:00", ["2026-03-29T01:00"]),
            # Paris autumn (25 October 2026, 03:00 -> 02:00): 02:30 runs once, the first time
            ("Europe/Paris", "30 2 * * *", "2026-10-24T12:00", ["2026-10-25T00:30"]),
            # New York autumn (1 November 2026): 01:00..01:59 repeats; hourly at :15 runs once per wall hour
            ("America/New_York", "15 * * * *", "2026-11-01T03:30",
             ["2026-11-01T04:15", "2026-11-01T05:15", "2026-11-01T07:15", "2026-11-01T08:15"]),
            # New York spring (8 March 2026, 02:00 -> 03:00): hourly at :00 has no 02:00
            ("America/New_York", "0 * * * *", "2026-03-08T05:30",
             ["2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00"]),
        ],
    )  # fmt: skip
    def test_the_scheduler_through_a_change(
        self, clock, container, scheduler, make_schedule, tz, cron, start, expected_utc
    ):
        at(clock, start + ":00")
        make_schedule(cron_expression=cron, timezone=tz)
        end = datetime.fromisoformat(expected_utc[-1]).replace(tzinfo=UTC) + timedelta(minutes=50)
        while clock() < end:
            clock.advance(minutes=5)
            scheduler.tick()
        fired = [r.planned_time.strftime("%Y-%m-%dT%H:%M") for r in runs(container)]
        assert [f for f in fired if f <= expected_utc[-1]] == expected_utc
        assert len(fired) == len(set(fired))


class TestLookahead:
    """The scheduler fires a slot up to `lookahead` early with scheduled_for = the slot, so that
    thousands of slots in one second are all ready in core when their time comes."""

    def test_fires_early_with_scheduled_for_unless_overlap_needs_the_outcome(
        self, clock, container, scheduler, make_schedule
    ):
        plain = make_schedule()
        make_schedule(overlap_policy="skip")
        at(clock, "2026-06-01T12:00:55")
        assert scheduler.tick() == 1
        [event] = fired_events(container)
        assert event["data"]["periodic_task_id"] == plain["id"]
        assert event["data"]["create_task"]["scheduled_for"] == "2026-06-01T12:01:00.000Z"
        at(clock, "2026-06-01T12:01:00")
        assert scheduler.tick() == 1  # the guarded one, at its time, without scheduled_for
        assert "scheduled_for" not in fired_events(container)[1]["data"]["create_task"]


def test_a_schedule_that_cannot_be_evaluated_does_not_stop_the_others(
    clock, container, scheduler, make_schedule
):
    from sqlalchemy import update

    from services.scheduling.models import PeriodicTask

    broken, healthy = make_schedule(), make_schedule()
    with container.uow() as uow:  # what no API call can write
        uow.session.execute(
            update(PeriodicTask).where(PeriodicTask.id == broken["id"]).values(timezone="Gone/Zone")
        )
        uow.commit()
    clock.advance(seconds=60)
    assert scheduler.tick() == 1
    assert [r.schedule_id for r in runs(container)] == [healthy["id"]]
    with container.session_factory() as session:
        assert session.get(PeriodicTask, broken["id"]).is_active is False


class TestEditInsideTheLookahead:
    """A schedule edited after the scheduler fired its next slot early (inside the lookahead
    window) must not go back onto that slot: the next pass would meet the slot's run key again.
    Found by an outside audit: the clash rolled back the whole batch, so no brand's schedules
    fired any more (for a week with run_all)."""

    def test_an_edit_keeps_the_schedule_past_the_slot_already_fired(
        self, client, auth, clock, container, scheduler, make_schedule
    ):
        other = make_schedule(headers=auth.headers(brand={"id": 10, "name": "Other"}))
        edited = make_schedule(misfire_policy="run_all", catchup_window_minutes=10080)
        at(clock, "2026-06-01T12:00:55")
        assert scheduler.tick() == 2  # both 12:01 slots, fired ahead
        at(clock, "2026-06-01T12:00:57")
        patched = client.patch(f"{P}{edited['id']}/", json={"description": "x"}, headers=auth.headers())
        assert patched.status_code == 200, patched.json
        assert patched.json["next_run_at"] == "2026-06-01T12:02:00.000Z"
        for moment in ("2026-06-01T12:01:00", "2026-06-01T12:01:55", "2026-06-01T12:02:55"):
            at(clock, moment)
            scheduler.tick()
        slots = {(r.schedule_id, r.planned_time.strftime("%H:%M")) for r in runs(container)}
        assert slots == {(s["id"], t) for s in (other, edited) for t in ("12:01", "12:02", "12:03")}
        assert get(client, auth, edited)["missed_runs_count"] == 0

    @pytest.mark.parametrize("path", ["toggle", "calendar"])
    def test_toggle_and_calendar_changes_do_too(
        self, client, auth, clock, container, scheduler, make_schedule, path
    ):
        schedule = make_schedule()
        at(clock, "2026-06-01T12:00:55")
        assert scheduler.tick() == 1
        if path == "toggle":
            for _ in range(2):
                assert client.post(f"{P}{schedule['id']}/toggle/", headers=auth.headers()).status_code == 200
        else:
            calendar = client.post(
                "/tasks/scheduled/calendars/",
                json={"name": "c", "excluded_dates": ["2030-01-01"]},
                headers=auth.headers(),
            ).json
            attached = client.post(
                f"/tasks/scheduled/calendars/{calendar['id']}/tasks/",
                json={"periodic_task": schedule["id"]},
                headers=auth.headers(),
            )
            assert attached.status_code == 201, attached.json
        assert get(client, auth, schedule)["next_run_at"] == "2026-06-01T12:02:00.000Z"

    def test_a_slot_fired_already_is_skipped_not_a_stall(self, clock, container, scheduler, make_schedule):
        """Defence in depth: whatever put a schedule back on a fired slot, the others still fire."""
        from sqlalchemy import update

        from services.scheduling.models import PeriodicTask

        stuck, healthy = make_schedule(), make_schedule()
        at(clock, "2026-06-01T12:01:00")
        assert scheduler.tick() == 2
        with container.uow() as uow:  # what no API call can write any more
            uow.session.execute(
                update(PeriodicTask)
                .where(PeriodicTask.id == stuck["id"])
                .values(
                    next_planned_at=datetime(2026, 6, 1, 12, 1, tzinfo=UTC),
                    next_run_at=datetime(2026, 6, 1, 12, 1, tzinfo=UTC),
                )
            )
            uow.commit()
        at(clock, "2026-06-01T12:02:00")
        scheduler.tick()
        slots = sorted((r.schedule_id, r.planned_time.strftime("%H:%M")) for r in runs(container))
        assert slots == sorted(
            [
                (stuck["id"], "12:01"),
                (healthy["id"], "12:01"),
                (stuck["id"], "12:02"),
                (healthy["id"], "12:02"),
            ]
        )
