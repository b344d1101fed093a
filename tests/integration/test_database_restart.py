"""PostgreSQL restarted for a few seconds while tasks are created and run: every task a client got
a 201 for completes, its metrics reach core and monitoring, and no consumer parks anything (an
unreachable database is never a reason to dead-letter: consumers keep their deliveries and try
again). It stops the shared PostgreSQL, so it runs only in CI or when asked
(TASKHUB_TEST_DATABASE_RESTART=1), after every other test of the topology."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import requests

from shared.dead_letters import parked_queues
from shared.testing.fixtures import wait_until

from .conftest import Topology, restarts_shared

pytestmark = restarts_shared("stops the shared PostgreSQL", "TASKHUB_TEST_DATABASE_RESTART", order=3)

DOWN_SECONDS = 4


def postgres(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0


def test_postgresql_restarted_under_load_loses_nothing_and_parks_nothing(topology: Topology) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)  # the metrics this test makes, not the whole run's
    created: list[dict] = []
    refused: list[int] = []
    stop = threading.Event()

    def write() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(
                    topology.gateway + "/tasks/",
                    json={"task_type": "example.noop", "description": "during a database restart"},
                    headers=topology.headers(),
                    timeout=15,
                )
            except requests.RequestException:
                continue
            if response.status_code == 201:
                created.append(response.json())
            else:
                # the database is away: a JSON 5xx the client may retry, never a lost write; fast
                # 503s make these writers outrun the test gateway's rate limit, whose 429 says when
                # to come back
                assert response.headers.get("Content-Type", "").startswith("application/json")
                refused.append(response.status_code)
                if response.status_code == 429:
                    time.sleep(min(float(response.headers.get("Retry-After", "1")), 2.0))
            time.sleep(0.05)

    writers = [threading.Thread(target=write, daemon=True) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        wait_until(lambda: len(created) >= 20, 30, 0.1, "writes before the restart")
        postgres("stop")
        time.sleep(DOWN_SECONDS)
        postgres("start")
        wait_until(postgres_ready, 60, 0.5, "PostgreSQL back")
        after = len(created)
        wait_until(lambda: len(created) >= after + 20, 60, 0.2, "writes after the restart")
    finally:
        stop.set()
        for writer in writers:
            writer.join(20)
        if not postgres_ready():
            postgres("start")  # never leave it down
    assert set(refused) <= {429, 500, 502, 503, 504}, refused

    def unfinished() -> list[dict]:
        page = topology.get("/tasks/?search=database%20restart&page_size=100&status=active").json()
        return page["results"]

    wait_until(lambda: not unfinished(), 120, 0.5, "every task created around the restart completed")
    ids = {t["id"] for t in created}

    def without_metrics() -> set[int]:
        page = topology.get("/tasks/?search=database%20restart&has_metrics=false&page_size=100").json()
        return {t["id"] for t in page["results"]} & ids

    wait_until(lambda: not without_metrics(), 60, 0.5, "every completed task's metrics in core")

    def monitoring_missing() -> set[int]:
        recorded: set[int] = set()
        url = "/tasks/monitoring/metrics/?" + urlencode(
            {"page_size": 100, "created_after": started.isoformat()}
        )
        while url:
            response = topology.get(url.replace(topology.gateway, ""))
            if response.status_code != 200:  # the gateway's rate limit: ask again on the next round
                return ids
            page = response.json()
            recorded |= {r["base_task"]["id"] for r in page["results"]}
            url = page["next"]
        return ids - recorded

    wait_until(lambda: not monitoring_missing(), 60, 1.0, "every completed task's metrics in monitoring")
    assert parked_queues(topology.prefix) == {}, (
        "a consumer dead-lettered events because its database was away"
    )
