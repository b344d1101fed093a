"""The other services' HTTP calls to core, with the caller's own credentials: reading one of
core's tasks (persistence's `POST /persistent-jobs/` and scheduling's `base_task` templates, on
tasks whose events they are not bound to); scheduling adds its own calls
(services/scheduling/core_client.py). The caller's `Authorization` and `X-Brand-ID` are forwarded
(a `Caller`, built by the HTTP layer from the request), so core applies the caller's own scope:
the service never learns of a task its caller could not see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import requests

from shared.config import Settings
from shared.routes import service_path

TASKS = service_path("core", "/")  # core's tasks, "/tasks/"


@dataclass(frozen=True)
class Caller:
    """Who asked, as core must see them: their own credentials and request id."""

    authorization: str = ""
    brand_id: str = ""
    request_id: str = ""

    @classmethod
    def of(cls, headers: Any) -> Caller:
        """From the headers of the caller's request (werkzeug's, looked up case-insensitively)."""
        return cls(
            authorization=headers.get("Authorization", ""),
            brand_id=headers.get("X-Brand-ID", ""),
            request_id=headers.get("X-Request-ID", ""),
        )

    def headers(self) -> dict[str, str]:
        given = {
            "Authorization": self.authorization,
            "X-Brand-ID": self.brand_id,
            "X-Request-ID": self.request_id,
        }
        return {k: v for k, v in given.items() if v}


class CoreUnavailable(RuntimeError):
    """core did not answer usefully (down, timeout, 5xx)."""


def core_url(settings: Settings) -> str:
    """core's base URL for service-to-service calls (`make run`: this very process)."""
    return settings.get("TASKHUB_CORE_URL") or f"http://127.0.0.1:{os.environ.get('PORT', '8080')}"


@dataclass
class CoreTasks:
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

    def get_task(self, caller: Caller, pk: int) -> dict[str, Any] | None:
        """The task as core shows the caller, or None (missing or another brand's: the same 404)."""
        response = self._call("GET", f"{TASKS}{pk}/", caller.headers())
        if response.status_code == 200:
            return response.json()
        if response.status_code in (400, 403, 404):
            return None
        raise CoreUnavailable(f"core answered {response.status_code}")
