"""A plain task given a job: persistence makes the task's row from core's answer, and its events
reach persistence only once core, hearing of the job, marks the task persistent. What happened in
between (core's events without the header, which the bus drops) is caught up by the task.updated
core sends then: the window is forced open here by holding persistence's job.created back while
the task is cancelled or deleted in core."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from werkzeug.serving import make_server

from services.core.app import create_app as create_core_app
from services.core.container import bootstrap as bootstrap_core
from services.persistence.app import create_app
from services.persistence.container import bootstrap
from shared.background import Loop, start_loops
from shared.events.inprocess_bus import InProcessBus
from shared.events.outbox_relay import OutboxRelay
from shared.testing.fixtures import make_settings, wait_until

JOBS = "/tasks/persistent-jobs/persistent-jobs"


def test_a_task_that_ends_before_core_hears_of_its_job_ends_its_job(
    database_url: str, tmp_path: Path, auth: Any
):
    bus = InProcessBus(prefix="t.")  # make run's bus: the same filtered bindings as the broker
    core = bootstrap_core(make_settings("core", f"sqlite:///{tmp_path / 'core.db'}"), bus=bus)
    core_client: Any = create_core_app(container=core).test_client()
    server = make_server("127.0.0.1", 0, core_client.application, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    persistence = bootstrap(
        make_settings(
            "persistence",
            database_url,
            TASKHUB_CORE_URL=f"http://127.0.0.1:{server.server_port}",
            TASKHUB_AUTO_RESUME_SECONDS="0",
        ),
        bus=bus,
    )
    client: Any = create_app(container=persistence).test_client()
    consumer = persistence.consumers()[0]
    # core runs whole; persistence consumes, but its outbox (job.created) is relayed by hand
    stop = threading.Event()
    loops = [
        *core.background_loops(),
        Loop("persistence", consumer.subscription(bus, "persistence.persistence").run),
    ]
    threads = start_loops(loops, stop)
    try:
        tasks = [
            core_client.post("/tasks/", json={"task_type": "seo.analysis"}, headers=auth.headers()).json
            for _ in range(3)
        ]
        jobs = []
        for task in tasks:
            made = client.post(f"{JOBS}/", json={"base_task": task["id"]}, headers=auth.headers())
            assert made.status_code == 201, made.json
            assert made.json["status"] == "pending"
            jobs.append(made.json["id"])
        cancelled, deleted, edited = tasks
        assert (
            core_client.post(f"/tasks/{cancelled['id']}/cancel/", headers=auth.headers()).status_code == 200
        )
        assert core_client.delete(f"/tasks/{deleted['id']}/", headers=auth.headers()).status_code == 204
        raised = core_client.patch(
            f"/tasks/{edited['id']}/", json={"priority": "critical"}, headers=auth.headers()
        )
        assert raised.status_code == 200, raised.json

        def rows(ctx: Any, table: Any) -> int:
            with ctx.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

        wait_until(lambda: rows(core.ctx, core.ctx.outbox) == 0, 10, message="core relayed its events")
        assert client.get(f"{JOBS}/{jobs[0]}/", headers=auth.headers()).json["status"] == "pending"

        relay = OutboxRelay(persistence.ctx.engine, persistence.ctx.outbox, bus, "persistence")
        relay.publish_pending()  # the job.created core hears only now

        def job(pk: int) -> Any:
            return client.get(f"{JOBS}/{pk}/", headers=auth.headers())

        wait_until(lambda: job(jobs[0]).json["status"] == "cancelled", 10, message="the cancel caught up")
        wait_until(lambda: job(jobs[1]).status_code == 404, 10, message="the deletion caught up")
        wait_until(
            lambda: job(jobs[2]).json["base_task"]["priority"] == "critical", 10, message="the edit caught up"
        )
        assert job(jobs[2]).json["status"] == "pending"
        # from now on the task's events carry the header: a cancel reaches persistence directly
        assert core_client.post(f"/tasks/{edited['id']}/cancel/", headers=auth.headers()).status_code == 200
        wait_until(lambda: job(jobs[2]).json["status"] == "cancelled", 10, message="the cancel reached it")
        # and nothing else: two catch-ups, the deletion told again, the last cancel (a plain
        # task's event, had one been let through, would have come first)
        assert rows(persistence.ctx, persistence.ctx.inbox) == 4
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        server.shutdown()
        persistence.ctx.dispose()
        core.ctx.dispose()
