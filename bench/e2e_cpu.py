"""`python -m bench.e2e_cpu [N] [--bulk B]`: one end-to-end run of N no-op tasks (default 2,000;
one worker of 4 slots) without Celery, printing the rate, the CPU each process used per task and
the message budget per task: the quick way to see what a change to the pipeline did. Single POSTs
from 8 clients, or with `--bulk B` `POST /tasks/bulk/` of B tasks from 4 clients.
`python -m bench --only e2e,bulk` measures the same beside Celery."""

from __future__ import annotations

import argparse

from .observer import FULL
from .scenarios import e2e
from .topology import platform


def main(n: int, batch: int | None) -> None:
    with platform(concurrency=4) as p:
        clients = 8 if batch is None else 4
        figures = e2e.taskhub(p, n, clients=clients, waits=FULL, batch=batch)
    print(
        f"{n} tasks{'' if batch is None else f' in bulk of {batch}'}: {figures['tasks_per_s']:.2f} "
        f"tasks/s, submit->completed p50 {figures['p50_ms'] / 1000:.1f} s, p99 "
        f"{figures['p99_ms'] / 1000:.1f} s, not completed {figures['missing']:.0f}"
    )
    for section, key, unit in (("CPU per task", "cpu_ms", "ms"), ("per task", "budget", "")):
        print(f"\n{section}:")
        for name, value in figures.items():
            if name.startswith(key + ":"):
                print(f"  {name.split(':', 1)[1]:<44} {value:9.2f} {unit}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_cpu")
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=None, metavar="B")
    arguments = parser.parse_args()
    main(arguments.n, arguments.bulk)
