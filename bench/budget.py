"""The message budget of a task, named: from the raw counters per task of bench.observer to the
figures the bench prints (broker publishes, deliveries, acks, gets, confirms; transactions,
statements and rows written per database), totals first, then per process and per database.

A connection's packets to the broker count every command it sent (publishes, acks, basic.get,
declarations, heartbeats), batched or not: RabbitMQ 3.10 does not count empty basic.get replies,
so this is where a polling client shows."""

from __future__ import annotations

from collections.abc import Mapping

# What issue 12 asks of a no-op task.
TARGETS = {"publishes": "<= 3", "deliveries": "<= 6"}


def _by_suffix(raw: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith(prefix + ":")}


def named(raw: Mapping[str, float]) -> dict[str, float]:
    """`{"publishes": 5.0, "publishes by worker-1": 2.0, "transactions in core": 3.1, ...}`."""
    out: dict[str, float] = {}
    if any(k.startswith("queue ") for k in raw):
        per_process = {
            what: _by_suffix(raw, f"channel {counter}")
            for what, counter in (("publishes", "publish"), ("confirms", "confirm"), ("acks", "ack"))
        }
        delivered = _by_suffix(raw, "channel deliver")
        for owner, value in _by_suffix(raw, "channel get").items():
            delivered[owner] = delivered.get(owner, 0.0) + value
        per_process["deliveries"] = delivered
        per_process["packets to the broker"] = _by_suffix(raw, "packets")
        out["publishes"] = sum(per_process["publishes"].values())
        out["queue copies"] = raw.get("queue publish", 0.0)
        out["deliveries"] = raw.get("queue deliver", 0.0) + raw.get("queue get", 0.0)
        out["basic.get (not empty)"] = raw.get("queue get", 0.0)
        out["acks"] = raw.get("queue ack", 0.0)
        out["redeliveries"] = raw.get("queue redeliver", 0.0)
        out["confirms"] = sum(per_process["confirms"].values())
        out["packets to the broker"] = sum(per_process["packets to the broker"].values())
        for what, owners in per_process.items():
            for owner, value in sorted(owners.items()):
                if value >= 0.005:  # nothing, or the noise of the background subtracted
                    out[f"{what} by {owner}"] = value
    databases = sorted(_by_suffix(raw, "xact_commit"))
    transactions = {
        db: raw.get(f"xact_commit:{db}", 0.0) + raw.get(f"xact_rollback:{db}", 0.0) for db in databases
    }
    statements = _by_suffix(raw, "statements")
    if databases:
        out["transactions"] = sum(transactions.values())
    if statements:
        out["statements"] = sum(statements.values())
    for db in databases:
        out[f"transactions in {db}"] = transactions[db]
        if db in statements:
            out[f"statements in {db}"] = statements[db]
        out[f"rows written in {db}"] = sum(
            raw.get(f"{c}:{db}", 0.0) for c in ("tup_inserted", "tup_updated", "tup_deleted")
        )
        out[f"updates not HOT in {db}"] = raw.get(f"n_tup_upd:{db}", 0.0) - raw.get(
            f"n_tup_hot_upd:{db}", 0.0
        )
    for owner, value in sorted(_by_suffix(raw, "statements by").items()):
        if value >= 0.005:
            out[f"statements by {owner}"] = value
    return out
