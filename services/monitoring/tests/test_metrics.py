"""Metrics records: written from core's outcome events (one per task, later attempts update it),
by POST with its checks, listed with every filter of §2, API changes announced to core, scoped
by brand."""

from __future__ import annotations

import pytest

from shared.events.catalog import TaskCreated, TaskDeleted, TaskRetried, TaskStarted
from shared.events.envelope import iso, utcnow
from shared.testing.brand_isolation import assert_not_found_for, on_item
from shared.testing.fixtures import OTHER_BRAND

from .contract import assert_matches_contract

URL = "/tasks/monitoring/metrics/"


def created_data(task):
    """What core's task.created says of a task given by id, task_id, brand, type and priority."""
    now = iso(utcnow())
    return {
        **task,
        "status": "pending",
        "queue_name": task["priority"],
        "created_by": {"id": "1", "username": "martin"},
        "created_at": now,
        "updated_at": now,
        "context_data": {},
        "max_retries": 3,
        "timeout_minutes": 60,
    }


def listed(client, auth, query="", brand=None):
    headers = auth.headers(brand=brand) if brand else auth.headers()
    response = client.get(URL + query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


class TestRecordedFromEvents:
    def test_a_finished_task_gets_one_record_without_an_announcement(self, client, auth, feed):
        task = feed.task()
        feed.apply(
            TaskStarted(
                id=task["id"], task_id=task["task_id"], attempt=1, worker_name="w1", started_at=iso(utcnow())
            ),
            9,
        )
        feed.finished(task, execution_time_ms=1234.5, memory_usage_mb=80, cost_usd=0.02, tokens_used=900)
        [record] = listed(client, auth)["results"]
        assert record["base_task"] == {
            "id": task["id"],
            "task_id": task["task_id"],
            "task_type": "seo.analysis",
            "status": "completed",
        }
        assert (record["execution_time_ms"], record["tokens_used"], record["worker_name"]) == (
            1234.5,
            900,
            "w1",
        )
        assert 0 <= record["performance_score"] <= 10
        # core took the figures from the worker's report itself: nothing to announce
        assert feed.published("metrics.recorded") == []

    def test_a_later_attempt_updates_the_record_and_an_older_one_changes_nothing(self, client, auth, feed):
        task = feed.task()
        feed.finished(task, attempt=1, ok=False, execution_time_ms=50.0)
        feed.apply(TaskRetried(id=task["id"], task_id=task["task_id"], retry_count=1, reason="manual"), 9)
        feed.finished(task, attempt=2, execution_time_ms=70.0, retry_count=1)
        feed.finished(task, attempt=1, ok=False, execution_time_ms=999.0)  # late and older
        [record] = listed(client, auth)["results"]
        assert (record["execution_time_ms"], record["retry_count"], record["base_task"]["status"]) == (
            70.0,
            1,
            "completed",
        )

    def test_results_before_the_task_is_known_are_kept_and_completed_later(self, client, auth, feed):
        task = {
            "id": 77,
            "task_id": "task_77",
            "brand": {"id": 9, "name": "Humari"},
            "task_type": "late.type",
            "priority": "high",
        }
        feed.finished(task, execution_time_ms=10.0)
        [record] = listed(client, auth)["results"]
        assert record["base_task"]["task_type"] == "late.type"  # the outcome carries the summary
        feed.apply(TaskCreated(**{**created_data(task), "status": "pending"}), 9)
        [record] = listed(client, auth)["results"]
        assert record["base_task"]["status"] == "completed"  # a final status never goes back
        dashboard = client.get(URL + "dashboard/", headers=auth.headers()).json
        assert dashboard["performance_by_priority"] == {"high": {"avg_ms": 10.0, "count": 1}}

    def test_a_deleted_task_drops_its_record(self, client, auth, feed):
        task = feed.run()
        feed.apply(TaskDeleted(id=task["id"], task_id=task["task_id"]), 9)
        assert listed(client, auth)["count"] == 0
        [dropped] = feed.published("metrics.deleted")
        assert dropped["data"] == {"base_task": task["id"], "task_id": task["task_id"]}
        assert_matches_contract(dropped)
        feed.finished(task, attempt=2)  # a report that arrives after the deletion
        assert listed(client, auth)["count"] == 0
        assert client.post(URL, json={"base_task": task["id"]}, headers=auth.headers()).status_code == 400

    def test_an_event_naming_another_brands_task_is_ignored(self, client, auth, feed):
        task = feed.task()
        forged = feed.outcome({**task, "brand": OTHER_BRAND}, execution_time_ms=1.0)
        feed.apply_batch([forged])
        assert listed(client, auth)["count"] == 0
        assert listed(client, auth, brand=OTHER_BRAND)["count"] == 0


class TestWrite:
    def test_post_checks_base_task(self, client, auth, feed):
        mine, theirs = feed.task(), feed.task(brand=OTHER_BRAND)
        created = client.post(
            URL, json={"base_task": mine["id"], "execution_time_ms": 42}, headers=auth.headers()
        )
        assert created.status_code == 201, created.json
        assert created.json["base_task"]["id"] == mine["id"]
        for base_task in (mine["id"], theirs["id"], 999_999):
            response = client.post(URL, json={"base_task": base_task}, headers=auth.headers())
            assert response.status_code == 400, response.json
            assert list(response.json["field_errors"]) == ["base_task"]
        # another brand's task and an unknown one get the same answer
        other = client.post(URL, json={"base_task": theirs["id"]}, headers=auth.headers()).json
        unknown = client.post(URL, json={"base_task": 999_999}, headers=auth.headers()).json
        assert other == unknown

    def test_put_patch_delete(self, client, auth, feed):
        feed.run(execution_time_ms=100.0)
        record = listed(client, auth)["results"][0]
        item = f"{URL}{record['id']}/"
        patched = client.patch(item, json={"cost_usd": 1.5}, headers=auth.headers())
        assert patched.status_code == 200 and patched.json["cost_usd"] == 1.5
        # a correction through the API is announced (core shows the figures from it)
        [announced] = feed.published("metrics.recorded")
        assert (announced["data"]["base_task"], announced["data"]["cost_usd"]) == (
            record["base_task"]["id"],
            1.5,
        )
        assert_matches_contract(announced)
        assert (
            client.put(item, json={"execution_time_ms": 5}, headers=auth.headers()).json["execution_time_ms"]
            == 5
        )
        assert client.patch(item, json={"base_task": 1}, headers=auth.headers()).status_code == 400
        assert client.delete(item, headers=auth.headers(role="viewer")).status_code == 403
        assert_not_found_for(client, auth.headers(brand=OTHER_BRAND), on_item(item, "get", "delete"))
        assert client.delete(item, headers=auth.headers(role="operator")).status_code == 204
        assert client.get(item, headers=auth.headers()).status_code == 404

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"base_task": "x"}, "base_task"),
            ({}, "base_task"),
            ({"base_task": 1, "execution_time_ms": -1}, "execution_time_ms"),
            ({"base_task": 1, "cost_usd": "cheap"}, "cost_usd"),
            ({"base_task": 1, "performance_score": 3}, "performance_score"),
        ],
    )
    def test_invalid_bodies_name_the_field(self, client, auth, body, field):
        response = client.post(URL, json=body, headers=auth.headers())
        assert response.status_code == 400
        assert response.json["error_code"] == "VALIDATION_ERROR"
        assert field in response.json["field_errors"]


class TestList:
    def test_filters_search_and_ordering(self, client, auth, feed):
        fast = feed.run("seo.analysis", execution_time_ms=100.0, memory_usage_mb=10, cost_usd=0.1)
        feed.run("ai.content", execution_time_ms=5000.0, memory_usage_mb=900, cost_usd=2.0)
        feed.run("ai.content", brand=OTHER_BRAND, execution_time_ms=9000.0)

        def task_types(query):
            return [r["base_task"]["task_type"] for r in listed(client, auth, query)["results"]]

        assert task_types("?execution_time_ms__gte=1000") == ["ai.content"]
        assert task_types("?memory_usage_mb__lt=100&cost_usd__lte=0.1") == ["seo.analysis"]
        assert task_types("?search=AI.CON") == ["ai.content"]
        assert task_types("?ordering=-execution_time_ms") == ["ai.content", "seo.analysis"]
        assert task_types("?ordering=cost_usd") == ["seo.analysis", "ai.content"]
        assert task_types(f"?base_task={fast['id']}") == ["seo.analysis"]
        assert task_types("?performance_score__gte=0&created_after=2000-01-01T00:00:00Z") == [
            "ai.content",
            "seo.analysis",
        ]

    @pytest.mark.parametrize(
        "query, field",
        [
            ("ordering=-nope", "ordering"),
            ("execution_time_ms__gte=fast", "execution_time_ms__gte"),
            ("base_task=abc", "base_task"),
            ("created_after=yesterday", "created_after"),
            ("page_size=1000", "page_size"),
        ],
    )
    def test_bad_filters_are_400_naming_the_parameter(self, client, auth, query, field):
        response = client.get(f"{URL}?{query}", headers=auth.headers())
        assert response.status_code == 400
        assert field in response.json["field_errors"]
