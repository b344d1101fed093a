"""The `make up` topology for a benchmark: fresh PostgreSQL databases, RabbitMQ, gunicorn
services, workers and nginx on free ports, torn down afterwards (deploy/local/topology.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from shared.auth import mint_token
from shared.config import REPO_ROOT
from shared.routes import SERVICES
from shared.testing.broker_cleanup import delete_prefixed

ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SECRET = "bench-secret-" + "b" * 40
RUN_DIR = REPO_ROOT / "run" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(name: str) -> str:
    """An empty database; give it a name no other run uses (the machine is shared: another
    worktree's bench would drop it under this one's feet), and `drop_database` it after."""
    drop_database(name)
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Platform:
    base_url: str
    database_urls: dict[str, str]
    env: dict[str, str]
    run_dir: Path = RUN_DIR

    def headers(self, brand: int = 9) -> dict[str, str]:
        token = mint_token(SECRET, brands=[{"id": brand, "name": "Bench", "role": "admin"}], username="bench")
        return {"Authorization": f"Bearer {token}", "X-Brand-ID": str(brand)}

    @property
    def state(self) -> Path:
        """The launcher's state file: every process it started, by name and pid."""
        return self.run_dir / "topology.json"

    @property
    def broker_prefix(self) -> str:
        return self.env["AMQP_PREFIX"]

    @property
    def metrics_dirs(self) -> list[Path]:
        """Prometheus multiprocess folders: one per service (web + background) and one for the
        worker(s) and the scheduler, which `make up` does not give one."""
        return sorted(p for p in (self.run_dir / "prometheus").iterdir() if p.is_dir())

    def wait_for_worker(self, task_type: str = "example.noop", timeout_s: float = 60) -> None:
        """Until a worker's heartbeat has told core that it runs `task_type`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = requests.get(f"{self.base_url}/tasks/types/", headers=self.headers(), timeout=10)
            if response.ok and any(
                t["task_type"] == task_type and t["workers"] > 0 for t in response.json()["task_types"]
            ):
                return
            time.sleep(0.5)
        raise RuntimeError(f"no worker announced {task_type} within {timeout_s:.0f} s")


@contextlib.contextmanager
def platform(
    *,
    workers: int = 1,
    concurrency: int = 4,
    web_concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Platform]:
    run_dir = RUN_DIR
    port = free_port()
    urls = {svc: fresh_database(f"taskhub_bench{port}_{svc}") for svc in SERVICES}
    processes_metrics = run_dir / "prometheus" / "processes"
    shutil.rmtree(processes_metrics, ignore_errors=True)
    processes_metrics.mkdir(parents=True)
    env = {
        **os.environ,
        "JWT_SECRET": SECRET,
        "AMQP_URL": AMQP_URL,
        "AMQP_PREFIX": f"bench{port}.",
        "TASKHUB_RUN_DIR": str(run_dir),
        "GATEWAY_RATE_LIMIT": "1000000r/s",
        "GATEWAY_RATE_BURST": "1000000",
        "WEB_CONCURRENCY": str(web_concurrency),
        "TASKHUB_UP_WORKERS": str(workers),
        "TASKHUB_WORKER_CONCURRENCY": str(concurrency),
        "LOG_LEVEL": "WARNING",
        # services get their own folder from the launcher; the worker(s) and the scheduler this one
        "PROMETHEUS_MULTIPROC_DIR": str(processes_metrics),
        **{f"{svc.upper()}_DATABASE_URL": url for svc, url in urls.items()},
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "deploy.local.topology"]
    subprocess.run(
        [*command, "up", "--gateway-port", str(port), "--free-ports"], env=env, check=True, cwd=REPO_ROOT
    )
    try:
        yield Platform(f"http://127.0.0.1:{port}", urls, env, run_dir)
    finally:
        subprocess.run([*command, "down"], env=env, cwd=REPO_ROOT, check=False)
        delete_prefixed([env["AMQP_PREFIX"]])  # quorum queues hold the broker's file descriptors
        for url in urls.values():
            drop_database(url.rsplit("/", 1)[1])


def rss_mb_of_run_dir(run_dir: Path | None = None) -> dict[str, float]:
    """RSS of every process the topology started (its pid files), children included."""
    import json

    import psutil

    run_dir = run_dir or REPO_ROOT / "run" / "bench"
    out: dict[str, float] = {}
    state = run_dir / "topology.json"
    if not state.exists():
        return out
    for proc in json.loads(state.read_text()).get("processes", []):
        try:
            parent = psutil.Process(proc["pid"])
            total = parent.memory_info().rss + sum(
                c.memory_info().rss for c in parent.children(recursive=True)
            )
            out[proc["name"]] = round(total / 1024 / 1024, 1)
        except (psutil.Error, KeyError, TypeError):
            continue
    return out
