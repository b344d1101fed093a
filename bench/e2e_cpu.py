"""`python -m bench.e2e_cpu [N]`: the end-to-end scenario (N no-op tasks, default 2,000) with the
CPU seconds each process of the topology used, to see which one bounds the throughput.

CPU times are read every half second from the processes in the topology's state file (children
included) and the last reading is kept, since a process's times vanish once it stops."""

from __future__ import annotations

import json
import sys
import threading

import psutil

from .scenarios import e2e
from .topology import REPO_ROOT

STATE = REPO_ROOT / "run" / "bench" / "topology.json"


def _cpu_seconds() -> dict[str, float]:
    seconds: dict[str, float] = {}
    if not STATE.exists():
        return seconds
    for entry in json.loads(STATE.read_text()).get("processes", []):
        try:
            parent = psutil.Process(entry["pid"])
            family = [parent, *parent.children(recursive=True)]
            seconds[entry["name"]] = sum(p.cpu_times().user + p.cpu_times().system for p in family)
        except (psutil.Error, KeyError, TypeError):
            continue
    return seconds


def main(n: int) -> None:
    latest: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            for name, seconds in _cpu_seconds().items():
                latest[name] = max(latest.get(name, 0.0), seconds)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    figures = e2e.taskhub(n, clients=8, concurrency=4)
    done.set()
    sampler.join()
    print(
        f"{n} tasks: {figures['tasks_per_s']:.2f} tasks/s, submit->completed p50 "
        f"{figures['p50_ms'] / 1000:.1f} s, p99 {figures['p99_ms'] / 1000:.1f} s, "
        f"not completed {figures['missing']:.0f}"
    )
    for name, seconds in sorted(latest.items(), key=lambda item: -item[1]):
        print(f"  {name:<24} {seconds:7.1f} s CPU")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
