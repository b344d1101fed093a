"""core's HTTP contract (docs/api.md §1), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from services.core.models import Task
from shared.events.outbox_relay import OutboxRelay
from shared.testing.fixtures import OTHER_BRAND


class TestCreate:
    def test_created_task_shows_every_field(self, client, auth):
        response = client.post(
            "/tasks/",
            json={
                "task_type": "seo_keyword_analysis",
                "description": "500 keywords",
                "context_data": {"ids": [1, 2]},
            },
            headers=auth.headers(),
        )
        assert response.status_code == 201
        task = response.json
        assert task["task_id"].startswith("task_")
        assert task["status"] == "pending" and task["priority"] == "normal" and task["queue_name"] == "normal"
        assert task["brand"] == {"id": 9, "name": "Humari"}
        assert task["created_by"] == {"id": "1", "username": "martin"}
        assert task["created_at"].endswith("Z")
        assert task["max_retries"] == 3 and task["timeout_minutes"] == 60
        assert task["has_metrics"] is False and task["metrics"] is None

    def test_validation_errors_name_the_field(self, client, auth):
        response = client.post(
            "/tasks/",
            json={"task_type": "Bad Type!", "priority": "urgent", "max_retries": 50},
            headers=auth.headers(),
        )
        assert response.status_code == 400
        assert response.json["error_code"] == "VALIDATION_ERROR"
        assert set(response.json["field_errors"]) == {"task_type", "priority", "max_retries"}

    def test_missing_task_type(self, client, auth):
        response = client.post("/tasks/", json={}, headers=auth.headers())
        assert response.status_code == 400 and "task_type" in response.json["field_errors"]

    def test_scheduled_in_the_past_is_refused(self, client, auth):
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        response = client.post(
            "/tasks/", json={"task_type": "x", "scheduled_for": past}, headers=auth.headers()
        )
        assert response.status_code == 400 and response.json["error_code"] == "SCHEDULE_IN_PAST"

    def test_read_only_fields_are_refused(self, client, auth):
        response = client.post(
            "/tasks/", json={"task_type": "x", "status": "completed"}, headers=auth.headers()
        )
        assert response.status_code == 400 and "status" in response.json["field_errors"]

    def test_idempotency_key_returns_the_first_task(self, client, auth):
        headers = auth.headers(**{"Idempotency-Key": "abc-1"})
        first = client.post("/tasks/", json={"task_type": "x"}, headers=headers)
        again = client.post("/tasks/", json={"task_type": "x"}, headers=headers)
        assert first.status_code == 201 and again.status_code == 200
        assert again.json["id"] == first.json["id"]
        assert client.get("/tasks/", headers=auth.headers()).json["count"] == 1

    def test_an_idempotency_key_reused_with_another_body_is_422(self, client, auth):
        headers = auth.headers(**{"Idempotency-Key": "abc-2"})
        first = client.post("/tasks/", json={"task_type": "x", "max_retries": None}, headers=headers)
        same = client.post("/tasks/", json={"task_type": "x"}, headers=headers)  # null == left out
        other = client.post("/tasks/", json={"task_type": "x", "description": "else"}, headers=headers)
        assert (first.status_code, same.status_code) == (201, 200) and same.json["id"] == first.json["id"]
        assert (other.status_code, other.json["error_code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
        too_long = auth.headers(**{"Idempotency-Key": "k" * 256})
        refused = client.post("/tasks/", json={"task_type": "x"}, headers=too_long)
        assert (refused.status_code, refused.json["error_code"]) == (400, "VALIDATION_ERROR")
        assert client.get("/tasks/", headers=auth.headers()).json["count"] == 1

    def test_malformed_and_non_json_bodies(self, client, auth):
        bad = client.post(
            "/tasks/", data="{nope", headers={**auth.headers(), "Content-Type": "application/json"}
        )
        assert bad.status_code == 400 and bad.json["error_code"] == "MALFORMED_JSON"
        text = client.post("/tasks/", data="hello", headers={**auth.headers(), "Content-Type": "text/plain"})
        assert text.status_code == 415 and text.json["error_code"] == "UNSUPPORTED_MEDIA_TYPE"

    def test_body_over_the_limit_is_413_json(self, client, auth):
        huge = {"task_type": "x", "context_data": {"blob": "a" * (1024 * 1024 + 10)}}
        response = client.post("/tasks/", json=huge, headers=auth.headers())
        assert response.status_code == 413 and response.json["error_code"] == "PAYLOAD_TOO_LARGE"


class TestList:
    def test_filters_orderings_and_search(self, client, auth, make_task):
        make_task(task_type="seo.analysis", priority="low", description="Analyse keywords")
        make_task(task_type="seo.export", priority="critical")
        make_task(task_type="ai.content", priority="high")
        h = auth.headers()
        assert client.get("/tasks/?task_type__startswith=seo.", headers=h).json["count"] == 2
        assert client.get("/tasks/?priority=low,high", headers=h).json["count"] == 2
        assert client.get("/tasks/?search=KEYWORDS", headers=h).json["count"] == 1
        assert client.get("/tasks/?status=active", headers=h).json["count"] == 3
        ranked = [t["priority"] for t in client.get("/tasks/?ordering=-priority", headers=h).json["results"]]
        assert ranked == ["critical", "high", "low"]
        assert client.get("/tasks/?retry_count__gte=1", headers=h).json["count"] == 0

    def test_bad_filter_values_are_400_naming_the_parameter(self, client, auth):
        h = auth.headers()
        for query, name in [
            ("status=nope", "status"),
            ("ordering=secret", "ordering"),
            ("retry_count__gte=x", "retry_count__gte"),
            ("created_after=yesterday", "created_after"),
        ]:
            response = client.get(f"/tasks/?{query}", headers=h)
            assert response.status_code == 400, query
            assert name in response.json["field_errors"], response.json

    def test_pagination_links_keep_the_filters_and_honour_forwarded_headers(self, client, auth, make_task):
        for _ in range(3):
            make_task(priority="high")
        headers = {**auth.headers(), "X-Forwarded-Proto": "https", "X-Forwarded-Host": "backoffice.example"}
        page = client.get("/tasks/?priority=high&page_size=2&ordering=created_at", headers=headers).json
        assert page["count"] == 3 and len(page["results"]) == 2 and page["previous"] is None
        link = urlparse(page["next"])
        assert (link.scheme, link.netloc, link.path) == ("https", "backoffice.example", "/tasks/")
        assert parse_qs(link.query) == {
            "priority": ["high"],
            "page_size": ["2"],
            "ordering": ["created_at"],
            "page": ["2"],
        }
        second = client.get(f"/tasks/?{link.query}", headers=auth.headers()).json
        assert len(second["results"]) == 1 and second["next"] is None and second["previous"]
        past_end = client.get("/tasks/?page=5", headers=auth.headers())
        assert past_end.status_code == 404 and past_end.json["error_code"] == "NOT_FOUND"


class TestDispatch:
    def test_a_type_no_worker_serves_waits_in_the_database_until_one_does(
        self, client, auth, make_task, container, live_worker
    ):
        relay = OutboxRelay(container.ctx.engine, container.ctx.outbox, container.bus, "core")
        make_task(task_type="report.daily")
        relay.publish_pending()
        queue = container.bus.work_queue_name("normal")
        assert container.bus.queue_figures(queue).ready == 0
        assert client.get("/tasks/?status=pending", headers=auth.headers()).json["count"] == 1
        live_worker("report.daily")
        container._dispatch_due()
        relay.publish_pending()
        assert container.bus.queue_figures(queue).ready == 1
        types = client.get("/tasks/types/", headers=auth.headers()).json
        assert [(t["task_type"], t["workers"]) for t in types["task_types"]] == [("report.daily", 1)]

    def test_a_known_type_is_dispatched_at_once(self, client, auth, make_task, container, live_worker):
        live_worker("example.noop")
        make_task(task_type="example.noop", priority="high")
        OutboxRelay(container.ctx.engine, container.ctx.outbox, container.bus, "core").publish_pending()
        assert container.bus.queue_figures(container.bus.work_queue_name("high")).ready == 1


class TestQueuedTaskChanges:
    """Issue 13, finding 6: a queued task's run inputs changed, or the task deleted, before a worker
    took it: the worker runs the new values, or nothing."""

    def orders(self, container):
        outbox = container.ctx.outbox
        with container.session_factory() as session:
            rows = session.execute(
                select(outbox.c.routing_key, outbox.c.body)
                .where(outbox.c.exchange == "work")
                .order_by(outbox.c.id)
            ).all()
        return [json.loads(body) for _, body in rows]

    def control(self, container, event_type):
        outbox = container.ctx.outbox
        with container.session_factory() as session:
            bodies = session.scalars(select(outbox.c.body).where(outbox.c.routing_key == event_type)).all()
        return [json.loads(body)["data"] for body in bodies]

    def test_new_inputs_of_a_queued_task_go_out_as_a_new_attempt_and_the_old_one_is_revoked(
        self, client, auth, make_task, container, live_worker
    ):
        live_worker("example.noop")
        task = make_task(task_type="example.noop", context_data={"url": "a"}, timeout_minutes=5)
        changed = client.patch(
            f"/tasks/{task['id']}/",
            json={"context_data": {"url": "b"}, "timeout_minutes": 9},
            headers=auth.headers(),
        )
        assert changed.status_code == 200
        orders = self.orders(container)
        assert [(o["attempt"], o["context_data"], o["timeout_minutes"]) for o in orders] == [
            (1, {"url": "a"}, 5),
            (2, {"url": "b"}, 9),
        ]
        assert [(c["task_id"], c["attempt"]) for c in self.control(container, "task.attempt_revoked")] == [
            (task["task_id"], 1)
        ]

    def test_a_deleted_queued_task_tells_the_workers_which_attempt_to_drop(
        self, client, auth, make_task, container, live_worker
    ):
        live_worker("example.noop")
        task = make_task(task_type="example.noop")
        assert client.delete(f"/tasks/{task['id']}/", headers=auth.headers()).status_code == 204
        assert [(d["task_id"], d["attempt"]) for d in self.control(container, "task.deleted")] == [
            (task["task_id"], 1)
        ]


class TestLifecycle:
    def test_cancel_then_retry_then_history(self, client, auth, make_task):
        task = make_task()
        h = auth.headers()
        cancelled = client.post(f"/tasks/{task['id']}/cancel/", headers=h)
        assert cancelled.status_code == 200 and cancelled.json["previous_status"] == "pending"
        again = client.post(f"/tasks/{task['id']}/cancel/", headers=h)
        assert again.status_code == 409 and again.json["error_code"] == "INVALID_STATUS_TRANSITION"
        retried = client.post(f"/tasks/{task['id']}/retry/", json={"new_priority": "high"}, headers=h)
        assert (
            retried.status_code == 200
            and retried.json["new_status"] == "pending"
            and retried.json["retry_count"] == 1
        )
        detail = client.get(f"/tasks/{task['id']}/", headers=h).json
        assert detail["priority"] == "high"
        assert [c["to_status"] for c in detail["status_history"]] == ["pending", "cancelled", "pending"]

    def test_retry_of_a_pending_task_names_the_allowed_statuses(self, client, auth, make_task):
        task = make_task()
        response = client.post(f"/tasks/{task['id']}/retry/", json={}, headers=auth.headers())
        assert response.status_code == 409
        assert response.json["current_status"] == "pending"
        assert sorted(response.json["allowed_statuses"]) == ["cancelled", "failed"]

    def test_max_retries_exceeded(self, client, auth, make_task):
        task = make_task(max_retries=0)
        client.post(f"/tasks/{task['id']}/cancel/", headers=auth.headers())
        response = client.post(f"/tasks/{task['id']}/retry/", json={}, headers=auth.headers())
        assert response.status_code == 409 and response.json["error_code"] == "MAX_RETRIES_EXCEEDED"

    def test_update_and_delete(self, client, auth, make_task):
        task = make_task()
        h = auth.headers()
        patched = client.patch(
            f"/tasks/{task['id']}/", json={"description": "new", "priority": "critical"}, headers=h
        )
        assert patched.status_code == 200 and patched.json["description"] == "new"
        assert patched.json["queue_name"] == "critical"
        assert (
            client.patch(f"/tasks/{task['id']}/", json={"status": "completed"}, headers=h).status_code == 400
        )
        assert client.delete(f"/tasks/{task['id']}/", headers=h).status_code == 204
        gone = client.get(f"/tasks/{task['id']}/", headers=h)
        assert gone.status_code == 404 and gone.json["error_code"] == "TASK_NOT_FOUND"

    def test_the_traceback_is_shown_to_the_brands_admins_only(self, client, auth, make_task, container):
        task = make_task(description="d")
        with container.uow() as uow:
            uow.session.get(Task, task["id"]).error_traceback = "Traceback: boom"
            uow.commit()
        url = f"/tasks/{task['id']}/"
        for role, shown in (("admin", "Traceback: boom"), ("operator", None), ("viewer", None)):
            assert client.get(url, headers=auth.headers(role)).json["error_traceback"] == shown, role
        for role, shown in (("admin", "Traceback: boom"), ("operator", None)):
            updated = client.patch(url, json={"description": "e"}, headers=auth.headers(role))
            assert (updated.status_code, updated.json["error_traceback"]) == (200, shown), role
        listed = client.get("/tasks/", headers=auth.headers()).json["results"][0]
        assert "error_traceback" not in listed  # the list never carries it

    def test_stats(self, client, auth, make_task, container, live_worker):
        live_worker("a")
        make_task(task_type="a")
        make_task(task_type="a", priority="high")
        OutboxRelay(container.ctx.engine, container.ctx.outbox, container.bus, "core").publish_pending()
        h = auth.headers()
        stats = client.get("/tasks/queue-stats/", headers=h).json
        assert stats["total_tasks"] == 2 and stats["queues"]["high"]["pending"] == 1
        assert stats["queues"]["normal"]["broker_ready"] == 1  # live from the bus
        types = client.get("/tasks/type-stats/", headers=h).json
        assert types["task_types"]["a"]["total"] == 2


class TestBrandIsolation:
    def test_another_brand_sees_nothing_and_changes_nothing(self, client, auth, make_task):
        task = make_task(description="secret plan")
        other = auth.headers(brand=OTHER_BRAND)
        assert client.get("/tasks/", headers=other).json["count"] == 0
        assert client.get("/tasks/?search=secret", headers=other).json["count"] == 0
        missing = client.get("/tasks/999999/", headers=other)
        for method, url in [
            ("get", f"/tasks/{task['id']}/"),
            ("patch", f"/tasks/{task['id']}/"),
            ("delete", f"/tasks/{task['id']}/"),
            ("post", f"/tasks/{task['id']}/retry/"),
            ("post", f"/tasks/{task['id']}/cancel/"),
        ]:
            response = getattr(client, method)(url, json={}, headers=other)
            assert response.status_code == 404, (method, url)
            assert response.json == missing.json  # existence does not leak
        assert client.get("/tasks/queue-stats/", headers=other).json["total_tasks"] == 0
        assert client.get("/tasks/type-stats/", headers=other).json["task_types"] == {}
        assert client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status"] == "pending"

    def test_idempotency_keys_are_per_brand(self, client, auth):
        first = client.post(
            "/tasks/", json={"task_type": "x"}, headers=auth.headers(**{"Idempotency-Key": "k"})
        )
        other = client.post(
            "/tasks/",
            json={"task_type": "x"},
            headers=auth.headers(brand=OTHER_BRAND, **{"Idempotency-Key": "k"}),
        )
        assert first.status_code == 201 and other.status_code == 201
        assert other.json["id"] != first.json["id"]


class TestOperational:
    def test_health_ready_metrics_docs(self, client):
        assert client.get("/healthz").json["status"] == "ok"
        assert client.get("/readyz").status_code == 200
        assert b"taskhub_http_requests_total" in client.get("/metrics").data
        spec = client.get("/docs/core/openapi.json").json
        assert "/tasks/{task_pk}/retry/" in spec["paths"]
        assert client.get("/docs/core/").status_code == 200
        assert client.get("/docs/core/static/swagger-ui-bundle.js").status_code == 200

    def test_request_id_is_kept_or_generated(self, client, auth):
        kept = client.get("/tasks/", headers={**auth.headers(), "X-Request-ID": "req-123"})
        assert kept.headers["X-Request-ID"] == "req-123"
        generated = client.get("/nowhere")
        assert len(generated.headers["X-Request-ID"]) >= 16
        assert generated.json["error_code"] == "NOT_FOUND"
        assert client.put("/healthz").status_code == 405
