"""Workers: registered by heartbeats, online by heartbeat age, announced offline when silent,
shared infrastructure whose task details are limited to the caller's brand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.events.catalog import ActiveAttempt, WorkerHeartbeat
from shared.events.envelope import iso, utcnow
from shared.testing.brand_isolation import assert_not_found_for, on_item
from shared.testing.fixtures import OTHER_BRAND

from .contract import assert_matches_contract

URL = "/tasks/monitoring/workers/"


def beat(name="w1", queues=("critical", "high"), active=(), **figures):
    """A worker's heartbeat as the worker builds it."""
    fields = {
        "worker_name": name,
        "queues": list(queues),
        "concurrency": 4,
        "task_types": [],
        "active_task_ids": [t.task_id for t in active],
        "active_tasks": list(active),
        "cpu_percent": 20.0,
        "memory_percent": 40.0,
        "load_average": [0.5, 0.4, 0.3],
        "processed_tasks": 10,
        "failed_tasks": 1,
        "started_at": iso(utcnow() - timedelta(hours=2)),
        **figures,
    }
    return WorkerHeartbeat(**fields)


def heartbeat(feed, name="w1", queues=("critical", "high"), active=(), at=None, **figures):
    return feed.apply(beat(name, queues, active, **figures), None, at)


def running(task, brand_id):
    return ActiveAttempt(
        id=task["id"],
        task_id=task["task_id"],
        attempt=1,
        brand_id=brand_id,
        task_type=task["task_type"],
        started_at=iso(utcnow() - timedelta(seconds=5)),
        timeout_minutes=60,
    )


def workers(client, auth, query=""):
    response = client.get(URL + query, headers=auth.headers(role="viewer"))
    assert response.status_code == 200, response.json
    return response.json


def test_heartbeats_register_and_update_a_worker(client, auth, feed):
    heartbeat(feed, cpu_percent=10.0)
    heartbeat(feed, cpu_percent=55.0)
    heartbeat(feed, cpu_percent=99.0, at=utcnow() - timedelta(minutes=5))  # late: changes nothing
    [worker] = workers(client, auth)["results"]
    assert worker["worker_name"] == "w1" and worker["is_online"] is True
    assert (worker["cpu_percent"], worker["load_average"], worker["queue_name"]) == (
        55.0,
        0.5,
        "critical,high",
    )
    assert worker["success_rate"] == 90.0 and 1.9 < worker["uptime_hours"] < 2.1


def test_a_silent_worker_goes_offline_and_is_announced_once(client, auth, feed, container):
    task = feed.task()
    heartbeat(feed, "quiet", active=[running(task, 9)], at=utcnow() - timedelta(seconds=120))
    heartbeat(feed, "busy")
    assert [w["worker_name"] for w in workers(client, auth, "?is_online=false")["results"]] == ["quiet"]
    assert container.worker_watch.sweep().marked_offline == 1
    assert container.worker_watch.sweep().marked_offline == 0
    [offline] = feed.published("worker.offline")
    assert offline["data"] == {"worker_name": "quiet", "task_ids": [task["task_id"]]}
    assert offline["brand_id"] is None
    assert_matches_contract(offline)
    heartbeat(feed, "quiet")  # it speaks again: online again
    assert workers(client, auth, "?is_online=true&ordering=worker_name")["count"] == 2


def test_detail_shows_only_the_callers_tasks_and_performance(client, auth, feed):
    mine, theirs = feed.task(), feed.task(brand=OTHER_BRAND)
    feed.run(execution_time_ms=400.0)  # w1 finished one task of brand 9 ...
    feed.run(ok=False, execution_time_ms=100.0)  # ... and failed one
    heartbeat(feed, active=[running(mine, 9), running(theirs, OTHER_BRAND["id"])])
    worker_id = workers(client, auth)["results"][0]["id"]
    detail = client.get(f"{URL}{worker_id}/", headers=auth.headers(role="viewer")).json
    assert [t["task_id"] for t in detail["current_tasks"]] == [mine["task_id"]]
    assert detail["current_tasks"][0]["estimated_completion"] is not None
    assert detail["recent_performance"]["last_hour"] == {
        "tasks_completed": 1,
        "avg_execution_time_ms": 250.0,
        "errors": 1,
    }
    other = client.get(f"{URL}{worker_id}/", headers=auth.headers(role="viewer", brand=OTHER_BRAND)).json
    assert [t["task_id"] for t in other["current_tasks"]] == [theirs["task_id"]]
    assert other["recent_performance"]["last_24_hours"]["tasks_completed"] == 0
    assert detail["active_tasks"] == other["active_tasks"] == 2  # the worker itself is shared


def test_filters_and_overview(client, auth, feed):
    heartbeat(feed, "a", queues=["high"], cpu_percent=90.0, memory_percent=70.0)
    heartbeat(feed, "b", queues=["normal", "low"], cpu_percent=10.0, active=[running(feed.task(), 9)])
    heartbeat(feed, "gone", queues=["normal"], at=utcnow() - timedelta(hours=1))

    def names(query):
        return [w["worker_name"] for w in workers(client, auth, query)["results"]]

    assert names("?queue_name=normal") == ["b", "gone"]
    assert names("?queue_name=high,low") == ["a", "b"]
    assert names("?cpu_percent__gte=50&memory_percent__gte=50") == ["a"]
    assert names("?active_tasks__gte=1") == ["b"]
    assert names("?ordering=-cpu_percent&is_online=true") == ["a", "b"]
    assert client.get(URL + "?cpu_percent__gte=lots", headers=auth.headers()).status_code == 400
    overview = client.get(f"{URL}overview/", headers=auth.headers(role="viewer")).json
    assert (overview["total_workers"], overview["online_workers"]) == (3, 2)
    assert overview["queues"]["normal"] == {"workers": 1, "active_tasks": 1, "avg_load": 0.5}
    health = overview["system_health"]
    assert (health["overall_status"], health["avg_cpu_percent"], health["total_active_tasks"]) == (
        "degraded",
        50.0,
        1,
    )


def test_manual_records_belong_to_their_brand_and_admins_delete_them(client, auth, feed):
    created = client.post(
        URL, json={"worker_name": "manual-1", "queues": ["low"]}, headers=auth.headers(role="operator")
    )
    assert created.status_code == 201 and created.json["is_online"] is False
    again = client.post(URL, json={"worker_name": "manual-1"}, headers=auth.headers())
    assert again.status_code == 400 and list(again.json["field_errors"]) == ["worker_name"]
    item = f"{URL}{created.json['id']}/"
    assert client.patch(item, json={"cpu_percent": 12.5}, headers=auth.headers()).json["cpu_percent"] == 12.5
    assert client.patch(item, json={"cpu_percent": 300}, headers=auth.headers()).status_code == 400
    renamed = client.patch(item, json={"worker_name": "prod-worker-1"}, headers=auth.headers())
    assert renamed.status_code == 400 and "worker_name" in renamed.json["field_errors"]
    # another brand neither sees nor touches it (it would falsify that brand's fleet figures)
    other = auth.headers(role="admin", brand=OTHER_BRAND)
    assert_not_found_for(client, other, on_item(item, "get", "delete"))
    assert workers(client, auth)["count"] == 1
    assert client.get(URL, headers=other).json["count"] == 0
    assert client.get(f"{URL}overview/", headers=other).json["total_workers"] == 0
    assert client.delete(item, headers=auth.headers(role="operator")).status_code == 403
    assert client.delete(item, headers=auth.headers(role="admin")).status_code == 204
    assert client.get(item, headers=auth.headers()).status_code == 404


def test_no_brand_changes_a_worker_its_heartbeats_keep(client, auth, feed):
    """Issue 13 finding 7: any brand's operator renamed or falsified the shared records, and a
    rename of a live worker made persistence interrupt other brands' jobs."""
    heartbeat(feed, "prod-worker-1")
    [shared] = workers(client, auth)["results"]
    item = f"{URL}{shared['id']}/"
    for brand in (None, OTHER_BRAND):
        headers = auth.headers(role="admin", **({"brand": brand} if brand else {}))
        for method, body in (
            ("patch", {"processed_tasks": 10**9}),
            ("put", {"cpu_percent": 1}),
            ("delete", None),
        ):
            response = getattr(client, method)(item, json=body, headers=headers)
            assert (response.status_code, response.json["error_code"]) == (403, "PERMISSION_DENIED")
    assert workers(client, auth)["results"][0]["processed_tasks"] == 10
    # a manual record of a name a real worker then uses becomes the real worker's (and shared)
    manual = client.post(URL, json={"worker_name": "prod-worker-2"}, headers=auth.headers()).json
    heartbeat(feed, "prod-worker-2")
    taken = client.patch(f"{URL}{manual['id']}/", json={"cpu_percent": 1}, headers=auth.headers())
    assert taken.status_code == 403
    assert client.get(f"{URL}{manual['id']}/", headers=auth.headers(brand=OTHER_BRAND)).status_code == 200


@pytest.mark.parametrize("path", ["", "overview/", "1/"])
def test_workers_need_a_token(client, path):
    assert client.get(URL + path).status_code == 401
