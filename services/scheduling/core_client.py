"""The documented internal HTTP calls from scheduling to core (docs/scheduling.md):

- `POST /tasks/` with `Idempotency-Key` (and `X-Schedule-Origin`, a `schedule-run` grant signed
  by scheduling, shared.machine_identity) when a user asks for a run now
  and wants the created task in the answer. The same key is in the run's `schedule.fired` event,
  so core makes one task whichever of the two arrives first.
- `GET /tasks/{id}/` to read the task a periodic task is made from (`base_task`), its template.
- `POST /tasks/{id}/cancel/` with a `cancel-run` grant for that task (overlap policy cancel_previous).

The caller's `Authorization` and `X-Brand-ID` are forwarded (a `Caller`, built by the HTTP layer
from the request), so core applies the caller's own scope: scheduling never sees a task its
caller could not see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

from shared.routes import service_path

log = logging.getLogger(__name__)

TASKS = service_path("core", "/")  # core's tasks, "/tasks/"


@dataclass(frozen=True)
class Caller:
    """Who asked scheduling, as core must see them: their own credentials and request id."""

    authorization: str = ""
    brand_id: str = ""
    request_id: str = ""

    def headers(self) -> dict[str, str]:
        given = {
            "Authorization": self.authorization,
            "X-Brand-ID": self.brand_id,
            "X-Request-ID": self.request_id,
        }
        return {k: v for k, v in given.items() if v}


class CoreUnavailable(RuntimeError):
    """core did not answer usefully (down, timeout, 5xx)."""


@dataclass
class CoreClient:
    base_url: str
    timeout: float = 5.0

    def __post_init__(self) -> None:
        self._session = requests.Session()

    def _call(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        try:
            response = self._session.request(
                method, self.base_url.rstrip("/") + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise CoreUnavailable(str(error)) from None
        if response.status_code >= 500:
            raise CoreUnavailable(f"core answered {response.status_code}")
        return response

    def create_task(
        self, caller: Caller, key: str, body: dict[str, Any], origin_token: str | None
    ) -> dict[str, Any]:
        headers = {**caller.headers(), "Idempotency-Key": key, "Content-Type": "application/json"}
        if origin_token:  # scheduling's signed word that this is a schedule's run
            headers["X-Schedule-Origin"] = origin_token
        response = self._call("POST", TASKS, headers, json=body)
        if response.status_code not in (200, 201):
            raise CoreUnavailable(f"core refused the task: {response.status_code} {response.text[:300]}")
        return response.json()

    def get_task(self, caller: Caller, pk: int) -> dict[str, Any] | None:
        """The task as core shows the caller, or None (missing or another brand's: the same 404)."""
        response = self._call("GET", f"{TASKS}{pk}/", caller.headers())
        if response.status_code == 200:
            return response.json()
        if response.status_code in (400, 403, 404):
            return None
        raise CoreUnavailable(f"core answered {response.status_code}")

    def cancel_task(self, token: str, brand_id: int, pk: int) -> int:
        """Returns core's status code: 200 cancelled, 409 already final, 404 gone."""
        headers = {"Authorization": f"Bearer {token}", "X-Brand-ID": str(brand_id)}
        return self._call("POST", f"{TASKS}{pk}/cancel/", headers).status_code
