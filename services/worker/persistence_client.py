"""The worker's side of the persistence service's HTTP contract (checkpoints of persistent jobs).

A checkpoint must be durable before the handler goes on, so these calls are synchronous and run in
the handler's child process. Transient failures (connection refused, timeouts, 5xx, 429) are
retried with capped backoff for `retry_seconds`, then the attempt fails (retryable); a corrupted
checkpoint fails it for good."""

from __future__ import annotations

import random
import time
from typing import Any

import requests

from shared.routes import service_path

from .context import NonRetryableError

JOB_PATH = service_path("persistence", "/persistent-jobs/for-task/")
CHECKPOINT_PATH = service_path("persistence", "/checkpoints/")


class PersistenceUnavailable(RuntimeError):
    """The persistence service did not answer usefully within the retry window (retryable)."""


class CheckpointCorrupted(NonRetryableError):
    """The checkpoint to resume from failed its checksum: running on would redo or skip work."""


class PersistenceRefused(NonRetryableError):
    """A 4xx answer that retrying cannot change (a bug or a misconfiguration)."""


class PersistenceClient:
    def __init__(
        self, base_url: str, token: str, brand_id: int, *, retry_seconds: float = 30.0, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_seconds, self.timeout = retry_seconds, timeout
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "X-Brand-ID": str(brand_id)})

    def open_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """The job of this task (created if needed), what to do (`control`) and where to resume."""
        return self._post(JOB_PATH, body)

    def save_checkpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post(CHECKPOINT_PATH, body)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.retry_seconds
        delay, last = 0.2, "no answer"
        while True:
            try:
                response = self.session.post(self.base_url + path, json=body, timeout=self.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return response.json()
                last = f"HTTP {response.status_code} {response.text[:300]}"
                if response.status_code < 500 and response.status_code not in (408, 429):
                    self._refuse(response, path)
            if time.monotonic() + delay > deadline:
                raise PersistenceUnavailable(f"persistence service unavailable for {path}: {last}")
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _refuse(response: requests.Response, path: str) -> None:
        try:
            error = response.json()
        except ValueError:
            error = {}
        code = error.get("error_code") if isinstance(error, dict) else None
        detail = error.get("detail") if isinstance(error, dict) else None
        if code == "CHECKPOINT_CORRUPTED":
            raise CheckpointCorrupted(detail or "the checkpoint to resume from is corrupted")
        raise PersistenceRefused(f"persistence refused {path}: HTTP {response.status_code} {code} {detail}")

    def close(self) -> None:
        self.session.close()
