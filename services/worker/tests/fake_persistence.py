"""A stand-in for the persistence service's two calls the worker makes (the contract of
docs/worker.md), for testing the worker's side until the real service exists. Delete it (and point
the tests at the real service) once services/persistence serves these endpoints.

A real HTTP server on port 0 in a thread. Each task's behaviour is planned by its integer id:
`plans[id] = {"resume_from": {...}, "pause_at": 2, "corrupted": True}`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.worker.persistence_client import CHECKPOINT_PATH, JOB_PATH
from shared.machine_identity import ATTEMPT, CORE, MachineTokenError, MachineVerifier
from shared.testing.fixtures import make_settings
from shared.testing.local_http import QuietHandler


class FakePersistence:
    def __init__(self, jwt_secret: str) -> None:
        self.jwt_secret = jwt_secret
        self.verifier = MachineVerifier(make_settings("persistence", "sqlite://", JWT_SECRET=jwt_secret))
        self.plans: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}  # job_id -> {"base_task", "checkpoints": [...]}
        self.requests: list[dict[str, Any]] = []
        self.unavailable_next = 0  # answer this many next requests with 503
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePersistence:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def checkpoints_of(self, task_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [
                c for job in self.jobs.values() if job["base_task"] == task_id for c in job["checkpoints"]
            ]

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            if self.unavailable_next > 0:
                self.unavailable_next -= 1
                return 503, {"detail": "try later", "error_code": "SERVICE_UNAVAILABLE"}
            try:  # the attempt grant core put in the work message, as persistence checks it
                grant = self.verifier.verify(headers.get("Authorization", "")[7:], CORE)
            except MachineTokenError:
                grant = None
            if grant is None or grant.scope != ATTEMPT or headers.get("X-Brand-ID") != str(grant.brand_id):
                return 401, {
                    "detail": "an attempt grant for the brand is required",
                    "error_code": "AUTHENTICATION_FAILED",
                }
            if path == JOB_PATH and (body.get("base_task"), body.get("attempt")) != (
                grant.claims.get("task"),
                grant.claims.get("attempt"),
            ):
                return 403, {"detail": "not this grant's attempt", "error_code": "PERMISSION_DENIED"}
            if path == JOB_PATH:
                return self._open_job(body)
            if path == CHECKPOINT_PATH:
                return self._checkpoint(body)
            return 404, {"detail": "no such path", "error_code": "NOT_FOUND"}

    def _open_job(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        plan = self.plans.get(int(body["base_task"]), {})
        if plan.get("corrupted"):
            return 409, {
                "detail": "Checkpoint data does not match its checksum.",
                "error_code": "CHECKPOINT_CORRUPTED",
            }
        job_id = next((j for j, job in self.jobs.items() if job["base_task"] == body["base_task"]), None)
        if job_id is None:
            job_id = len(self.jobs) + 1
            self.jobs[job_id] = {"base_task": body["base_task"], "checkpoints": []}
        control = "pause" if self.jobs[job_id].get("paused") else "run"
        return 200, {
            "job_id": job_id,
            "status": "running",
            "control": control,
            "resume_from": plan.get("resume_from"),
        }

    def _checkpoint(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        job = self.jobs[int(body["persistent_job"])]
        job["checkpoints"].append(body)
        plan = self.plans.get(int(job["base_task"]), {})
        control = "pause" if plan.get("pause_at") == len(job["checkpoints"]) else "continue"
        job["paused"] = control == "pause"
        return 201, {"id": len(job["checkpoints"]), **body, "control": control}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = fake.answer(self.path, dict(self.headers), body)
                self.send_json(json.dumps(answer).encode(), status)

        return Handler
