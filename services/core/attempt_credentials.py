"""The credential each work message carries: an `attempt` grant (shared.machine_identity) for
the persistence calls of that one attempt (open its job, save its checkpoints). core mints it
because core knows the facts it vouches for: the task exists, in this brand, at this attempt.
A worker holds no key and no token of its own; what a handler could leak is good for its own
attempt only, and for no longer than the attempt can last.

`dispatch()` runs deep inside the service layer and event handlers, so the issuer is installed
once per process by the composition root (`install`), like a logger, instead of being passed
down every call path."""

from __future__ import annotations

from typing import Any

from shared.config import Settings
from shared.machine_identity import ATTEMPT, CORE, MachineIssuer, machine_issuer

# an attempt waits in its queue, then runs up to its timeout; the grant covers both
QUEUE_ALLOWANCE_SECONDS = 24 * 3600
DEFAULT_TIMEOUT_MINUTES = 60

_issuer: MachineIssuer | None = None


def install(settings: Settings) -> None:
    global _issuer
    _issuer = machine_issuer(settings, CORE)


def for_attempt(task: Any) -> str | None:
    """The grant for the task's current attempt; None when this process cannot mint (then a
    persistent handler fails with a clear message and plain handlers do not care)."""
    if _issuer is None:
        return None
    minutes = task.timeout_minutes or DEFAULT_TIMEOUT_MINUTES
    return _issuer.mint(
        ATTEMPT,
        task.brand_id,
        "machine:worker",
        int(minutes) * 60 + QUEUE_ALLOWANCE_SECONDS,
        task=task.id,
        attempt=task.attempt,
    )
