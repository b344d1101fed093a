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

from typing import Any

from shared.core_client import TASKS, Caller, CoreTasks, CoreUnavailable


class CoreClient(CoreTasks):
    """core's tasks as scheduling calls them: read (CoreTasks), created for a run now, cancelled."""

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

    def cancel_task(self, token: str, brand_id: int, pk: int) -> int:
        """Returns core's status code: 200 cancelled, 409 already final, 404 gone."""
        headers = {"Authorization": f"Bearer {token}", "X-Brand-ID": str(brand_id)}
        return self._call("POST", f"{TASKS}{pk}/cancel/", headers).status_code
