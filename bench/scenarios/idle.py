"""3. Idle: the topology up with nothing to do. After a warm-up (a worker has announced itself,
then a few seconds), the CPU each process `make up` started used (children included), and
PostgreSQL's and RabbitMQ's, as a percentage of one core over the window; and what the system
did per second meanwhile (broker publishes and packets, database transactions and statements),
which shows any loop that polls on a timer when nothing changed."""

from __future__ import annotations

import time

from .. import budget, cpu
from ..observer import Observer
from ..topology import Platform


def run(p: Platform, seconds: float, warmup_s: float) -> dict[str, float]:
    p.wait_for_worker()
    observer = Observer(cpu.topology_groups(p.state), p.database_urls, [p.broker_prefix], p.metrics_dirs)
    with observer:
        time.sleep(warmup_s)
        observer.mark("idle_start", counters=True)
        time.sleep(seconds)
        observer.mark("idle_end", counters=True)
    used = observer.cpu_seconds("idle_start", "idle_end")
    window = observer.times["idle_end"] - observer.times["idle_start"]
    out = {f"cpu_pct:{name}": used[name] / window * 100 for name in observer.own}
    out["cpu_pct:system total"] = sum(out.values())
    for name in ("postgresql backends", "postgresql shared", "rabbitmq"):
        out[f"cpu_pct:{name}"] = used[name] / window * 100
    out.update({f"per_s:{k}": v for k, v in budget.named(observer.idle_rates()).items()})
    return out
