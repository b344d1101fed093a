"""How a subscription applies the deliveries it holds, the same way in every bus adapter.

Several deliveries go to the batch handler at once (one transaction for all). If the batch fails,
nothing of it was committed: each delivery is then given to the plain handler on its own, so the
good ones still commit and a poison one fails alone, to be redelivered and, after the queue's
bounded deliveries, dead-lettered as if batches did not exist. Order is kept: the batch handler
and the one-by-one pass both take the deliveries in the order the queue gave them.

A TransientFailure (the handler's database is unreachable) is not a verdict on any delivery: it
goes up to the subscription, which keeps every delivery it holds and tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .bus import BatchHandler, Delivery, Handler, TransientFailure

log = logging.getLogger(__name__)

# How long a subscription holding fewer than a batch waits for more deliveries before applying
# them (TASKHUB_BATCH_LINGER_MS). A transaction's fixed cost (its inbox insert, its reads and writes
# of each table, its commit) is paid per batch: under a steady stream of tasks, lingering a few
# tens of milliseconds turns one-event batches into ten-event ones, at that much more latency.
DEFAULT_BATCH_LINGER_SECONDS = 0.025
# The same for the services that follow core's events (TASKHUB_READ_MODEL_LINGER_MS): nothing on a
# task's path waits for them, and a batch of 6 events cost monitoring four times what one of 40
# did per event (bench, 2026-12-05).
DEFAULT_READ_MODEL_LINGER_SECONDS = 0.1
# How long a subscription waits before applying again what a transient failure stopped.
TRANSIENT_FIRST_DELAY = 0.5
TRANSIENT_MAX_DELAY = 15.0


def apply_deliveries(
    queue: str, deliveries: Sequence[Delivery], handler: Handler, batch_handler: BatchHandler | None
) -> list[tuple[Delivery, bool]]:
    """Apply `deliveries`; returns each with True when it is committed (ack it) or False (retry).
    Raises TransientFailure when the handler cannot apply anything right now."""
    if batch_handler is not None and len(deliveries) > 1:
        try:
            batch_handler(deliveries)
        except TransientFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - the one-by-one pass reports the culprit
            log.warning(
                "batch of %d on %s failed (%r); applying them one by one", len(deliveries), queue, exc
            )
        else:
            return [(delivery, True) for delivery in deliveries]
    return [(delivery, _apply_one(queue, delivery, handler)) for delivery in deliveries]


def _apply_one(queue: str, delivery: Delivery, handler: Handler) -> bool:
    try:
        handler(delivery)
    except TransientFailure:
        raise
    except Exception:
        log.exception("handler failed on %s (delivery %d)", queue, delivery.delivery_count)
        return False
    return True


def transient_delay(failures: int) -> float:
    return min(TRANSIENT_MAX_DELAY, TRANSIENT_FIRST_DELAY * 2 ** max(0, failures - 1))
