"""`python -m bench [--quick] [--only memory,idle,e2e,...]`: runs the benchmarks, prints a table
and writes JSON to bench/results/. Each figure is the median of repeated runs with min and max;
each comparison is a ratio measured in the same run on the same machine. Targets: docs/benchmarks.md and
issue 12. A full run brings a fresh topology up for each scenario; a quick run (CI: the code
paths must not rot, the figures are not read) shares one, since starting it is most of its time."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from . import budget
from .observer import FULL, QUICK, Waits
from .report import print_table, write_json
from .stats import Figure
from .topology import Platform, platform, rss_mb_of_run_dir

RESULTS = Path(__file__).parent / "results"


class Platforms:
    """The topology each scenario runs on: a fresh one (full runs), or one for all (quick runs)."""

    def __init__(self, shared: bool):
        self.shared = shared
        self._stack = contextlib.ExitStack()
        self._one: Platform | None = None

    @contextlib.contextmanager
    def fresh(self, *, concurrency: int = 4, web_concurrency: int = 2) -> Iterator[Platform]:
        if not self.shared:
            with platform(concurrency=concurrency, web_concurrency=web_concurrency) as p:
                yield p
            return
        if self._one is None:
            self._one = self._stack.enter_context(platform())
        yield self._one

    def close(self) -> None:
        self._stack.close()


def collect(runs: list[dict[str, float]]) -> dict[str, tuple[float, ...]]:
    merged: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for key, value in run.items():
            merged[key].append(float(value))
    return {k: tuple(v) for k, v in merged.items()}


def figures_of(
    label: str, runs: dict[str, tuple[float, ...]], key: str, unit: str, targets: dict[str, str] | None = None
) -> list[Figure]:
    """One figure per `key:<what>` entry of `runs`, named `<label> <what>`; `targets` ("<= 3"),
    by what, are checked on every run."""
    out = []
    for name, values in runs.items():
        if not name.startswith(key + ":"):
            continue
        what = name.split(":", 1)[1]
        target = (targets or {}).get(what, "")
        meets = max(values) <= float(target.split()[-1]) if target else None
        out.append(Figure(f"{label} {what}", unit, values, target, meets))
    return out


def ratios(ours: tuple[float, ...], theirs: tuple[float, ...]) -> tuple[float, ...]:
    """Run by run when both sides have as many runs, else median over median."""
    if len(ours) != len(theirs):
        ours, theirs = (sorted(ours)[len(ours) // 2],), (sorted(theirs)[len(theirs) // 2],)
    return tuple(a / b if b else 0.0 for a, b in zip(ours, theirs, strict=True))


# --------------------------------------------------------------------------------------------
# End to end (issue 12, 1 and 2) and idle (3)


def e2e_sizes(quick: bool) -> tuple[int, int, int, int, Waits]:
    """tasks, clients, worker slots, repeats, and how long each run waits around its work"""
    if quick:
        return 200, 4, 4, 1, QUICK
    return 10_000, 8, 4, int(os.environ.get("BENCH_REPEATS", "3")), FULL


CELERY_RUNS: dict[tuple[int, int, int], dict[str, tuple[float, ...]]] = {}


def celery_runs(quick: bool) -> dict[str, tuple[float, ...]]:
    """Celery's one-by-one runs, measured once per bench run (e2e and bulk compare to them)."""
    from .scenarios import e2e

    n, clients, concurrency, repeats, waits = e2e_sizes(quick)
    key = (n, clients, concurrency)
    if key not in CELERY_RUNS:
        CELERY_RUNS[key] = collect([e2e.celery(n, clients, concurrency, waits) for _ in range(repeats)])
    return CELERY_RUNS[key]


def bench_e2e(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import e2e

    n, clients, concurrency, repeats, waits = e2e_sizes(quick)
    runs = []
    for _ in range(repeats):
        with platforms.fresh(concurrency=concurrency) as p:
            runs.append(e2e.taskhub(p, n, clients, waits))
    ours = collect(runs)
    theirs = celery_runs(quick)
    ratio = ratios(ours["tasks_per_s"], theirs["tasks_per_s"])
    return [
        Figure(f"e2e taskhub noop ({n} tasks) throughput", "t/s", ours["tasks_per_s"]),
        Figure("e2e taskhub submit->completed p50", "ms", ours["p50_ms"]),
        Figure("e2e taskhub submit->completed p99", "ms", ours["p99_ms"]),
        Figure("e2e taskhub tasks not completed", "n", ours["missing"], "0", max(ours["missing"]) == 0),
        Figure(f"e2e celery noop ({n} tasks) throughput", "t/s", theirs["tasks_per_s"]),
        Figure("e2e celery submit->done p50", "ms", theirs["p50_ms"]),
        Figure("e2e celery submit->done p99", "ms", theirs["p99_ms"]),
        Figure("e2e ratio taskhub / celery", "x", ratio, ">= 1.0", min(ratio) >= 1.0),
        *figures_of("e2e taskhub CPU per task:", ours, "cpu_ms", "ms"),
        *figures_of("e2e celery CPU per task:", theirs, "cpu_ms", "ms"),
        *figures_of("e2e taskhub per task:", ours, "budget", "n", budget.TARGETS),
        *figures_of("e2e celery per task:", theirs, "budget", "n"),
        *[
            Figure(f"memory under load 1: {k.split(':', 1)[1]}", "MB", v)
            for k, v in sorted(ours.items())
            if k.startswith("rss_mb:")
        ],
    ]


def bench_bulk(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import e2e

    n, _, concurrency, repeats, waits = e2e_sizes(quick)
    batch, clients = (100, 2) if quick else (500, 4)
    runs = []
    for _ in range(repeats):
        with platforms.fresh(concurrency=concurrency) as p:
            runs.append(e2e.taskhub(p, n, clients, waits, batch=batch))
    label = f"e2e bulk taskhub noop ({n} tasks, batches of {batch}) throughput"
    if not all(runs):
        return [Figure(label, "t/s", (), f"not available: POST {e2e.BULK_PATH} does not exist")]
    ours = collect(runs)
    theirs = celery_runs(quick)
    ratio = ratios(ours["tasks_per_s"], theirs["tasks_per_s"])
    return [
        Figure(label, "t/s", ours["tasks_per_s"]),
        Figure("e2e bulk taskhub submit->completed p50", "ms", ours["p50_ms"]),
        Figure("e2e bulk taskhub submit->completed p99", "ms", ours["p99_ms"]),
        Figure("e2e bulk taskhub tasks not completed", "n", ours["missing"], "0", max(ours["missing"]) == 0),
        Figure(f"e2e celery noop ({n} tasks, one by one) throughput", "t/s", theirs["tasks_per_s"]),
        Figure("e2e ratio taskhub bulk / celery one by one", "x", ratio, ">= 2.0", min(ratio) >= 2.0),
        *figures_of("e2e bulk taskhub CPU per task:", ours, "cpu_ms", "ms"),
        *figures_of("e2e bulk taskhub per task:", ours, "budget", "n", budget.TARGETS),
    ]


def bench_idle(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import idle

    seconds, warmup_s = (10.0, 3.0) if quick else (60.0, 5.0)
    with platforms.fresh() as p:
        r = collect([idle.run(p, seconds, warmup_s)])
    total = r.pop("cpu_pct:system total")
    return [
        Figure(f"idle CPU over {seconds:.0f} s: our processes together", "%", total, "< 3 %", max(total) < 3),
        *figures_of(f"idle CPU over {seconds:.0f} s:", r, "cpu_pct", "%"),
        *figures_of("idle per second:", r, "per_s", "/s"),
    ]


def percentiles(
    name: str, run: dict[str, float], budget_ms: float | None = None, note: str = ""
) -> list[Figure]:
    """A scenario run's p50 and p99 (`run["p50_ms"]`, `run["p99_ms"]`), the p99 held to
    `budget_ms` when there is one; `note` follows the percentile in the figure's name."""
    after = f" {note}" if note else ""
    p99 = run["p99_ms"]
    return [
        Figure(f"{name} p50{after}", "ms", (run["p50_ms"],)),
        Figure(
            f"{name} p99{after}",
            "ms",
            (p99,),
            f"< {budget_ms:g} ms" if budget_ms is not None else "",
            p99 < budget_ms if budget_ms is not None else None,
        ),
    ]


def bench_convergence(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import convergence

    figures = []
    for rate, seconds, drain_s in ((100, 2, 30), (200, 1, 30)) if quick else ((100, 60, 180), (200, 30, 600)):
        with platforms.fresh(concurrency=8) as p:
            r = convergence.run(p, rate, seconds, drain_s)
        label = f"convergence {rate} t/s for {seconds} s ({r['tasks']:.0f} tasks)"
        figures += [
            *percentiles(f"{label}: completed->in filters", r, 500 if rate == 100 else None),
            Figure(f"{label}: slowest", "ms", (r["max_ms"],)),
            Figure(
                f"{label}: never converged ({drain_s} s)",
                "n",
                (r["never_converged"],),
                "0",
                r["never_converged"] == 0,
            ),
            Figure(f"{label}: drained after last POST", "s", (r["drain_s"],)),
            Figure(f"{label}: failed POSTs", "n", (r["submit_errors"],), "0", r["submit_errors"] == 0),
        ]
    return figures


# --------------------------------------------------------------------------------------------
# The API, reads, the scheduler, memory (docs/benchmarks.md)


def bench_memory(quick: bool, platforms: Platforms) -> list[Figure]:
    with platforms.fresh() as p:
        time.sleep(3)
        rest = rss_mb_of_run_dir(p.run_dir)
    return [Figure(f"memory at rest: {name}", "MB", (mb,)) for name, mb in sorted(rest.items())]


def bench_api(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import api

    rates = [25, 50] if quick else [50, 100, 200, 300, 400, 600, 800, 1200]
    seconds, repeats = (2, 1) if quick else (10, int(os.environ.get("BENCH_REPEATS", "3")))
    with platforms.fresh(concurrency=2, web_concurrency=2) as p:
        runs = collect([api.figures(p, rates, seconds) for _ in range(repeats)])
    return [
        Figure("api trivial JSON peak (nginx+gunicorn)", "rps", runs["trivial_peak_rps"]),
        Figure("api POST /tasks/ peak", "rps", runs["post_peak_rps"]),
        Figure("api filtered GET /tasks/ peak", "rps", runs["get_peak_rps"]),
        Figure(
            "api POST / trivial ratio",
            "x",
            runs["post_vs_trivial_ratio"],
            ">= 0.5",
            min(runs["post_vs_trivial_ratio"]) >= 0.5,
        ),
        Figure("api POST p50 at half peak", "ms", runs["post_half_peak_p50_ms"]),
        Figure(
            "api POST p99 at half peak",
            "ms",
            runs["post_half_peak_p99_ms"],
            "< 50 ms",
            max(runs["post_half_peak_p99_ms"]) < 50,
        ),
        Figure("api GET p99 at half peak", "ms", runs["get_half_peak_p99_ms"]),
        Figure(
            "api POST errors at half peak",
            "n",
            runs["post_half_peak_errors"],
            "0",
            max(runs["post_half_peak_errors"]) == 0,
        ),
    ]


def bench_read(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import read_paths

    rows, repeats = (20_000, 10) if quick else (1_000_000, 200)
    figures = []
    with platforms.fresh(concurrency=1) as p:
        read_paths.load_core(p.database_urls["core"], rows)
        queries = dict(read_paths.CORE_QUERIES)
        if importlib.util.find_spec("bench.scenarios.monitoring_load") and "monitoring" in p.database_urls:
            from .scenarios import monitoring_load

            monitoring_load.load(p.database_urls["monitoring"], rows)
            queries.update(read_paths.MONITORING_QUERIES)
        timings = read_paths.time_queries(p, queries, repeats)
    for name, t in timings.items():
        figures += percentiles(f"read {name}", t, 30, f"({rows} rows)")
    return figures


def bench_scheduler(quick: bool, platforms: Platforms) -> list[Figure]:
    from .scenarios import scheduler

    n, due, lead_s = (2_000, 200, 5.0) if quick else (100_000, 10_000, 25.0)
    figures = []
    for lookahead, label in ((10.0, "lookahead 10 s"), (0.0, "no lookahead")):
        r = scheduler.run(n, due, lookahead, lead_s)
        figures += [
            *percentiles("scheduler fire delay", r, 1000, f"({due}/{n} due, {label})"),
            Figure(f"scheduler missed slots ({label})", "n", (r["missed"],), "0", r["missed"] == 0),
            Figure(f"scheduler doubled slots ({label})", "n", (r["doubled"],), "0", r["doubled"] == 0),
        ]
    return figures


# In this order, so that a shared (quick) topology is measured at rest and idle before any load,
# and the read scenario's bulk-loaded rows come last.
BENCHES = {
    "memory": bench_memory,
    "idle": bench_idle,
    "e2e": bench_e2e,
    "bulk": bench_bulk,
    "convergence": bench_convergence,
    "api": bench_api,
    "read": bench_read,
    "scheduler": bench_scheduler,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, one repeat (CI: never rots)")
    parser.add_argument("--only", help="comma list of " + ",".join(BENCHES))
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    figures: list[Figure] = []
    platforms = Platforms(shared=args.quick)
    try:
        for name in chosen:
            print(f"== {name}", flush=True)
            started = time.monotonic()
            measured = BENCHES[name](args.quick, platforms)
            print_table(measured)  # as it comes: a long run interrupted still leaves its figures
            print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
            figures.extend(measured)
    finally:
        platforms.close()
    print_table(figures)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_json(figures, RESULTS / f"{'quick' if args.quick else 'full'}-{stamp}.json", args.quick)


if __name__ == "__main__":
    main()
