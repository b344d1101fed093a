"""/tasks/scheduled/cron-jobs/ and /tasks/scheduled/calendars/ as a user sees them."""

from __future__ import annotations

import pytest

from shared.testing.brand_isolation import assert_not_found_for, on_item
from shared.testing.fixtures import OTHER_BRAND

from .conftest import P, sqlite_only

J = "/tasks/scheduled/cron-jobs/"
C = "/tasks/scheduled/calendars/"


@pytest.fixture
def make_job(client, auth):
    def make(**fields):
        body = {"name": "cleanup", "task_type": "example.noop", "frequency": "hourly", **fields}
        response = client.post(J, json=body, headers=auth.headers())
        assert response.status_code == 201, response.json
        return response.json

    return make


class TestCronJobs:
    def test_presets_custom_and_firing(self, client, auth, clock, scheduler, make_job):
        hourly = make_job(task_config={"days": 30})
        assert (hourly["next_run_at"], hourly["total_executions"], hourly["last_execution_at"]) == (
            "2026-06-01T13:00:00.000Z",
            0,
            None,
        )
        custom = make_job(
            name="reports", frequency="custom", custom_cron="*/10 * * * *", timezone="Asia/Kolkata"
        )
        assert custom["next_run_at"] == "2026-06-01T12:10:00.000Z"
        clock.advance(minutes=10)
        assert scheduler.tick() == 1
        shown = client.get(f"{J}{custom['id']}/", headers=auth.headers()).json
        assert (shown["total_executions"], shown["last_execution_at"]) == (1, "2026-06-01T12:10:00.000Z")
        [run] = client.get(f"{J}{custom['id']}/runs/", headers=auth.headers()).json["results"]
        assert run["idempotency_key"] == f"cron:{custom['id']}:2026-06-01T12:10:00.000Z"

    @sqlite_only
    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"frequency": "fortnightly"}, "FREQUENCY_NOT_SUPPORTED", "frequency"),
            ({"frequency": "custom"}, "VALIDATION_ERROR", "custom_cron"),
            ({"frequency": "custom", "custom_cron": "70 * * * *"}, "INVALID_CRON_EXPRESSION", "custom_cron"),
            ({"frequency": "daily", "custom_cron": "0 1 * * *"}, "VALIDATION_ERROR", "custom_cron"),
            ({"timezone": "Paris"}, "TIMEZONE_INVALID", "timezone"),
            ({"task_type": "Bad Type!"}, "VALIDATION_ERROR", "task_type"),
        ],
    )
    def test_errors(self, client, auth, body, code, field):
        response = client.post(
            J,
            json={"name": "x", "task_type": "example.noop", "frequency": "daily", **body},
            headers=auth.headers(),
        )
        assert (response.status_code, response.json["error_code"]) == (400, code), response.json
        assert field in response.json["field_errors"]

    def test_names_are_unique_per_brand_and_filters(self, client, auth, make_job):
        job = make_job()
        again = client.post(
            J, json={"name": "cleanup", "task_type": "a", "frequency": "daily"}, headers=auth.headers()
        )
        assert again.status_code == 400 and "name" in again.json["field_errors"]
        elsewhere = client.post(
            J,
            json={"name": "cleanup", "task_type": "a", "frequency": "daily"},
            headers=auth.headers(brand=OTHER_BRAND),
        )
        assert elsewhere.status_code == 201
        make_job(name="weekly", frequency="weekly", task_type="example.sleep")
        listed = client.get(J, query_string={"frequency": "hourly"}, headers=auth.headers()).json
        assert [j["id"] for j in listed["results"]] == [job["id"]]
        assert (
            client.get(J, query_string={"task_type": "example.sleep"}, headers=auth.headers()).json["count"]
            == 1
        )
        assert client.get(J, query_string={"is_active": "false"}, headers=auth.headers()).json["count"] == 0
        bad = client.get(J, query_string={"frequency": "yearly"}, headers=auth.headers())
        assert bad.status_code == 400 and "frequency" in bad.json["field_errors"]
        updated = client.patch(f"{J}{job['id']}/", json={"frequency": "daily"}, headers=auth.headers()).json
        assert updated["next_run_at"] == "2026-06-02T00:00:00.000Z"

    def test_another_brand_sees_nothing(self, client, auth, make_job):
        job = make_job()
        other = auth.headers(brand=OTHER_BRAND)
        item = f"{J}{job['id']}/"
        assert_not_found_for(
            client,
            other,
            [*on_item(item), ("post", f"{item}execute/"), ("get", f"{item}runs/")],
        )
        assert client.get(J, headers=other).json["count"] == 0


@pytest.fixture
def make_calendar(client, auth):
    def make(**fields):
        response = client.post(C, json={"name": "holidays", **fields}, headers=auth.headers())
        assert response.status_code == 201, response.json
        return response.json

    return make


class TestCalendars:
    def test_crud_attach_detach(self, client, auth, make_calendar, make_schedule):
        calendar = make_calendar(
            color="#ff8800", excluded_dates=["2026-12-25", {"start": "2026-08-01", "end": "2026-08-15"}]
        )
        assert calendar["excluded_dates"] == ["2026-12-25", {"start": "2026-08-01", "end": "2026-08-15"}]
        schedule = make_schedule(cron_expression="0 9 * * *")
        attached = client.post(
            f"{C}{calendar['id']}/tasks/",
            json={"periodic_task": schedule["id"], "custom_cron": "0 10 * * *", "custom_config": {"x": 1}},
            headers=auth.headers(),
        )
        assert attached.status_code == 201
        assert attached.json == {
            "periodic_task": schedule["id"],
            "custom_cron": "0 10 * * *",
            "custom_config": {"x": 1},
        }
        shown = client.get(f"{C}{calendar['id']}/", headers=auth.headers()).json
        assert shown["periodic_tasks"] == [attached.json]
        # the calendar's own expression is the one the schedule fires on while attached
        assert client.get(f"{P}{schedule['id']}/", headers=auth.headers()).json["next_run_at"] == (
            "2026-06-02T10:00:00.000Z"
        )
        twice = client.post(
            f"{C}{calendar['id']}/tasks/", json={"periodic_task": schedule["id"]}, headers=auth.headers()
        )
        assert twice.status_code == 400
        assert (
            client.delete(f"{C}{calendar['id']}/tasks/{schedule['id']}/", headers=auth.headers()).status_code
            == 204
        )
        assert (
            client.delete(f"{C}{calendar['id']}/tasks/{schedule['id']}/", headers=auth.headers()).status_code
            == 404
        )
        assert client.get(f"{P}{schedule['id']}/", headers=auth.headers()).json["next_run_at"] == (
            "2026-06-02T09:00:00.000Z"
        )
        operator = client.delete(f"{C}{calendar['id']}/", headers=auth.headers(role="operator"))
        assert operator.status_code == 403
        assert client.delete(f"{C}{calendar['id']}/", headers=auth.headers()).status_code == 204

    @sqlite_only
    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"color": "red"}, "VALIDATION_ERROR", "color"),
            ({"default_timezone": "Moon/Base"}, "TIMEZONE_INVALID", "default_timezone"),
            ({"excluded_dates": ["2026-13-01"]}, "VALIDATION_ERROR", "excluded_dates"),
            (
                {"excluded_dates": [{"start": "2026-02-02", "end": "2026-02-01"}]},
                "VALIDATION_ERROR",
                "excluded_dates",
            ),
        ],
    )
    def test_errors(self, client, auth, body, code, field):
        response = client.post(C, json={"name": "c", **body}, headers=auth.headers())
        assert (response.status_code, response.json["error_code"]) == (400, code), response.json
        assert field in response.json["field_errors"]

    def test_events_window_honours_zones_and_exclusions(self, client, auth, make_calendar, make_schedule):
        calendar = make_calendar(default_timezone="America/New_York", excluded_dates=["2026-06-03"])
        schedule = make_schedule(cron_expression="0 9 * * *", timezone="America/New_York", description="d")

        def attach(schedule):
            client.post(
                f"{C}{calendar['id']}/tasks/", json={"periodic_task": schedule["id"]}, headers=auth.headers()
            )

        def events(**window):
            return client.get(f"{C}{calendar['id']}/events/", query_string=window, headers=auth.headers())

        attach(schedule)

        window = events(start="2026-06-02", end="2026-06-04").json
        assert window["calendar_name"] == "holidays"
        assert window["period"] == {"start": "2026-06-02T00:00:00.000Z", "end": "2026-06-05T00:00:00.000Z"}
        assert [e["scheduled_at"] for e in window["events"]] == [
            "2026-06-02T13:00:00.000Z",
            "2026-06-04T13:00:00.000Z",
        ]
        assert window["events"][0] == {
            "periodic_task_id": schedule["id"],
            "task_type": "example.noop",
            "description": "d",
            "scheduled_at": "2026-06-02T13:00:00.000Z",
        }
        assert window["total_events"] == 2
        default = events().json
        assert default["total_events"] == 6  # the next 7 days minus the excluded one
        too_long = events(start="2026-01-01", end="2027-06-01")
        assert too_long.status_code == 400
        attach(make_schedule())  # every minute
        too_many = events(start="2026-06-10", end="2026-06-20")
        assert too_many.status_code == 400

    def test_filters(self, client, auth, make_calendar, make_schedule):
        used = make_calendar(name="used")
        make_calendar(name="empty", is_active=False)
        schedule = make_schedule()
        client.post(f"{C}{used['id']}/tasks/", json={"periodic_task": schedule["id"]}, headers=auth.headers())

        def names(**query):
            return [
                c["name"] for c in client.get(C, query_string=query, headers=auth.headers()).json["results"]
            ]

        assert names(has_events="true") == ["used"]
        assert names(has_events="false") == ["empty"]
        assert names(is_active="false") == ["empty"]

    def test_another_brand_sees_nothing(self, client, auth, make_calendar, make_schedule):
        calendar = make_calendar()
        schedule = make_schedule()
        other = auth.headers(brand=OTHER_BRAND)
        base = f"{C}{calendar['id']}/"
        assert_not_found_for(
            client,
            other,
            [
                *on_item(base),
                ("get", f"{base}events/"),
                ("post", f"{base}tasks/", {"periodic_task": schedule["id"]}),
                ("delete", f"{base}tasks/{schedule['id']}/"),
            ],
        )
        assert client.get(C, headers=other).json["count"] == 0
        # and a schedule of another brand cannot be attached to one's own calendar
        mine = client.post(C, json={"name": "mine"}, headers=other).json
        foreign = client.post(
            f"{C}{mine['id']}/tasks/", json={"periodic_task": schedule["id"]}, headers=other
        )
        assert foreign.status_code == 400 and "periodic_task" in foreign.json["field_errors"]


@sqlite_only
class TestExclusionLimits:
    """Issue 13 finding 4: a calendar took any number of excluded dates and checked every slot
    against each of them: 50,000 dates made one events/ call run for minutes and slowed the
    scheduler every brand shares."""

    def test_a_calendar_holds_at_most_1000_entries(self, client, auth):
        days = [f"{2030 + i // 365}-01-01" for i in range(1001)]
        refused = client.post(C, json={"name": "big", "excluded_dates": days}, headers=auth.headers())
        assert refused.status_code == 400 and "excluded_dates" in refused.json["field_errors"]

    def test_the_cost_of_a_slot_does_not_grow_with_the_exclusions(self, client, auth, make_schedule):
        import time
        from datetime import date, timedelta

        days = [(date(2030, 1, 1) + timedelta(days=2 * i)).isoformat() for i in range(1000)]
        calendar = client.post(C, json={"name": "many", "excluded_dates": days}, headers=auth.headers()).json
        schedule = make_schedule(cron_expression="* * * * *", calendars=[calendar["id"]])
        started = time.monotonic()
        window = client.get(
            f"{C}{calendar['id']}/events/?start=2026-06-02&end=2026-06-04", headers=auth.headers()
        )
        elapsed = time.monotonic() - started
        assert window.status_code == 200 and window.json["total_events"] == 3 * 1440
        assert {e["periodic_task_id"] for e in window.json["events"]} == {schedule["id"]}
        # 4,320 slots x 1,000 exclusions scanned each took about ten seconds; a lookup is microseconds
        assert elapsed < 5, elapsed
        # the exclusions still apply: an excluded day has no slot, the next day has them all
        excluded = client.get(
            f"{C}{calendar['id']}/events/?start=2030-01-01&end=2030-01-02", headers=auth.headers()
        )
        assert [e["scheduled_at"][:10] for e in excluded.json["events"]] == ["2030-01-02"] * 1440
