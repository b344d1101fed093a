"""`python -m bench.e2e_cpu [N]`: one end-to-end run of N no-op tasks (default 2,000; 8 clients,
one worker of 4 slots) without Celery, printing the rate, the CPU each process used per task and
the message budget per task: the quick way to see what a change to the pipeline did.
`python -m bench --only e2e` measures the same beside Celery."""

from __future__ import annotations

import sys

from .observer import FULL
from .scenarios import e2e
from .topology import platform


def main(n: int) -> None:
    with platform(concurrency=4) as p:
        figures = e2e.taskhub(p, n, clients=8, waits=FULL)
    print(
        f"{n} tasks: {figures['tasks_per_s']:.2f} tasks/s, submit->completed p50 "
        f"{figures['p50_ms'] / 1000:.1f} s, p99 {figures['p99_ms'] / 1000:.1f} s, "
        f"not completed {figures['missing']:.0f}"
    )
    for section, key, unit in (("CPU per task", "cpu_ms", "ms"), ("per task", "budget", "")):
        print(f"\n{section}:")
        for name, value in figures.items():
            if name.startswith(key + ":"):
                print(f"  {name.split(':', 1)[1]:<44} {value:9.2f} {unit}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
