"""`python -m bench [--quick] [--only idle,e2e,bulk,...]`: runs the benchmarks, prints a table
and writes JSON to bench/results/. Each figure is the median of repeated runs with min and max;
each comparison is a ratio measured in the same run on the same machine. Targets: DESIGN.md."""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from . import budget
from .report import print_table, write_json
from .stats import Figure

RESULTS = Path(__file__).parent / "results"


def collect(runs: list[dict[str, float]]) -> dict[str, tuple[float, ...]]:
    merged: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for key, value in run.items():
            merged[key].append(float(value))
    return {k: tuple(v) for k, v in merged.items()}


def figures_of(label: str, runs: dict[str, tuple[float, ...]], key: str, unit: str) -> list[Figure]:
    """One figure per `key:<what>` entry of `runs`, named `<label> <what>`; the budget's targets
    (issue 12: publishes and deliveries per task) are checked on every run."""
    out = []
    for name, values in runs.items():
        if not name.startswith(key + ":"):
            continue
        what = name.split(":", 1)[1]
        target = budget.TARGETS.get(what, "") if key == "budget" else ""
        meets = max(values) <= float(target.split()[-1]) if target else None
        out.append(Figure(f"{label} {what}", unit, values, target, meets))
    return out


CELERY_RUNS: dict[tuple[int, int, int], dict[str, tuple[float, ...]]] = {}


def celery_runs(
    n: int, clients: int, concurrency: int, repeats: int, idle_s: float
) -> dict[str, tuple[float, ...]]:
    """Celery's one-by-one runs, measured once per bench run and size (e2e and bulk compare to them)."""
    from .scenarios import e2e

    key = (n, clients, concurrency)
    if key not in CELERY_RUNS:
        CELERY_RUNS[key] = collect([e2e.celery(n, clients, concurrency, idle_s) for _ in range(repeats)])
    return CELERY_RUNS[key]


def sizes(quick: bool) -> tuple[int, int, int, int, float]:
    """tasks, clients, worker concurrency, repeats, idle seconds before each run"""
    if quick:
        return 300, 4, 4, 1, 5.0
    return 10_000, 8, 4, int(os.environ.get("BENCH_REPEATS", "3")), 10.0


def bench_e2e(quick: bool) -> list[Figure]:
    from .scenarios import e2e

    n, clients, concurrency, repeats, idle_s = sizes(quick)
    ours = collect([e2e.taskhub(n, clients, concurrency, idle_s) for _ in range(repeats)])
    theirs = celery_runs(n, clients, concurrency, repeats, idle_s)
    ratio = tuple(
        a / b if b else 0.0 for a, b in zip(ours["tasks_per_s"], theirs["tasks_per_s"], strict=True)
    )
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
        *figures_of("e2e taskhub per task:", ours, "budget", "n"),
        *figures_of("e2e celery per task:", theirs, "budget", "n"),
        *[
            Figure(f"memory under load 1: {k.split(':', 1)[1]}", "MB", v)
            for k, v in sorted(ours.items())
            if k.startswith("rss_mb:")
        ],
    ]


def bench_bulk(quick: bool) -> list[Figure]:
    from .scenarios import e2e

    n, clients, concurrency, repeats, idle_s = sizes(quick)
    batch, bulk_clients = (150, 2) if quick else (500, 4)
    runs = [e2e.taskhub(n, bulk_clients, concurrency, idle_s, batch=batch) for _ in range(repeats)]
    label = f"e2e bulk taskhub noop ({n} tasks, batches of {batch}) throughput"
    if not all(runs):
        return [Figure(label, "t/s", (), f"not available: POST {e2e.BULK_PATH} is missing")]
    ours = collect(runs)
    theirs = celery_runs(n, clients, concurrency, repeats, idle_s)
    ratio = tuple(
        a / b if b else 0.0 for a, b in zip(ours["tasks_per_s"], theirs["tasks_per_s"], strict=True)
    )
    return [
        Figure(label, "t/s", ours["tasks_per_s"]),
        Figure("e2e bulk taskhub submit->completed p50", "ms", ours["p50_ms"]),
        Figure("e2e bulk taskhub submit->completed p99", "ms", ours["p99_ms"]),
        Figure("e2e bulk taskhub tasks not completed", "n", ours["missing"], "0", max(ours["missing"]) == 0),
        Figure(f"e2e celery noop ({n} tasks, one by one) throughput", "t/s", theirs["tasks_per_s"]),
        Figure("e2e ratio taskhub bulk / celery one by one", "x", ratio, ">= 2.0", min(ratio) >= 2.0),
        *figures_of("e2e bulk taskhub CPU per task:", ours, "cpu_ms", "ms"),
        *figures_of("e2e bulk taskhub per task:", ours, "budget", "n"),
    ]


def bench_idle(quick: bool) -> list[Figure]:
    from .scenarios import idle

    seconds, warmup_s = (10.0, 3.0) if quick else (60.0, 5.0)
    r = collect([idle.run(seconds, warmup_s)])
    total = r.pop("cpu_pct:system total")
    return [
        Figure(f"idle CPU over {seconds:.0f} s: our processes together", "%", total, "< 3 %", max(total) < 3),
        *figures_of(f"idle CPU over {seconds:.0f} s:", r, "cpu_pct", "%"),
        *figures_of("idle per second:", r, "per_s", "/s"),
    ]


def bench_api(quick: bool) -> list[Figure]:
    from .scenarios import api
    from .topology import platform

    rates = [25, 50] if quick else [50, 100, 200, 300, 400, 600, 800, 1200]
    seconds, repeats = (2, 1) if quick else (10, int(os.environ.get("BENCH_REPEATS", "3")))
    with platform(concurrency=2, web_concurrency=2) as p:
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


def bench_read(quick: bool) -> list[Figure]:
    from .scenarios import read_paths
    from .topology import platform

    rows, repeats = (20_000, 10) if quick else (1_000_000, 200)
    figures = []
    with platform(concurrency=1) as p:
        read_paths.load_core(p.database_urls["core"], rows)
        queries = dict(read_paths.CORE_QUERIES)
        if importlib.util.find_spec("bench.scenarios.monitoring_load") and "monitoring" in p.database_urls:
            from .scenarios import monitoring_load

            monitoring_load.load(p.database_urls["monitoring"], rows)
            queries.update(read_paths.MONITORING_QUERIES)
        timings = read_paths.time_queries(p, queries, repeats)
    for name, t in timings.items():
        figures.append(Figure(f"read {name} p50 ({rows} rows)", "ms", (t["p50_ms"],)))
        figures.append(
            Figure(f"read {name} p99 ({rows} rows)", "ms", (t["p99_ms"],), "< 30 ms", t["p99_ms"] < 30)
        )
    return figures


def bench_convergence(quick: bool) -> list[Figure]:
    from .scenarios import convergence
    from .topology import platform

    seconds = 2 if quick else 20
    with platform(concurrency=8) as p:
        r = convergence.run(p, rate=200, seconds=seconds, sample_every=10)
    return [
        Figure("convergence completed->has_metrics p50 at 200 t/s", "ms", (r["p50_ms"],)),
        Figure(
            "convergence completed->has_metrics p99 at 200 t/s",
            "ms",
            (r["p99_ms"],),
            "< 500 ms",
            r["p99_ms"] < 500,
        ),
        Figure(
            "convergence samples never converged (60 s)",
            "n",
            (r["never_converged"],),
            "0",
            r["never_converged"] == 0,
        ),
    ]


def bench_memory(quick: bool) -> list[Figure]:
    import time

    from .topology import platform, rss_mb_of_run_dir

    with platform() as _:
        time.sleep(3)
        rest = rss_mb_of_run_dir()
    return [Figure(f"memory at rest: {name}", "MB", (mb,)) for name, mb in sorted(rest.items())]


def bench_scheduler(quick: bool) -> list[Figure]:
    from .scenarios import scheduler

    n, due = (2_000, 200) if quick else (100_000, 10_000)
    figures = []
    for lookahead, label in ((10.0, "lookahead 10 s"), (0.0, "no lookahead")):
        r = scheduler.run(n, due, lookahead)
        figures += [
            Figure(f"scheduler fire delay p50 ({due}/{n} due, {label})", "ms", (r["p50_ms"],)),
            Figure(
                f"scheduler fire delay p99 ({due}/{n} due, {label})",
                "ms",
                (r["p99_ms"],),
                "< 1000 ms",
                r["p99_ms"] < 1000,
            ),
            Figure(f"scheduler missed slots ({label})", "n", (r["missed"],), "0", r["missed"] == 0),
            Figure(f"scheduler doubled slots ({label})", "n", (r["doubled"],), "0", r["doubled"] == 0),
        ]
    return figures


BENCHES = {
    "read": bench_read,
    "scheduler": bench_scheduler,
    "api": bench_api,
    "idle": bench_idle,
    "e2e": bench_e2e,
    "bulk": bench_bulk,
    "convergence": bench_convergence,
    "memory": bench_memory,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, one repeat (CI: never rots)")
    parser.add_argument("--only", help="comma list of " + ",".join(BENCHES))
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    figures: list[Figure] = []
    for name in chosen:
        print(f"== {name}", flush=True)
        measured = BENCHES[name](args.quick)
        print_table(measured)  # as it comes: a long run interrupted still leaves its figures
        figures.extend(measured)
    print_table(figures)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_json(figures, RESULTS / f"{'quick' if args.quick else 'full'}-{stamp}.json", args.quick)


if __name__ == "__main__":
    main()
