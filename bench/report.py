"""The table printed at the end of a bench run and the JSON written beside it."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from .stats import Figure


def _version(command: list[str]) -> str:
    try:
        return (
            subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        )
    except Exception:
        return "unknown"


def environment() -> dict[str, object]:
    import os

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_mem_gib()} GiB",
        "python": platform.python_version(),
        "postgresql": _version(["psql", "--version"]),
        "rabbitmq": _version(["rabbitmqctl", "version"]),
        "nginx": _version(["sh", "-c", "nginx -v 2>&1"]),
        "packages": {p: _pkg(p) for p in ("flask", "sqlalchemy", "pika", "gunicorn", "celery", "psycopg")},
    }


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _mem_gib() -> int:
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 1024 / 1024)
    except OSError:
        return 0


def print_table(figures: list[Figure]) -> None:
    print(f"\n{'figure':72} {'median':>12} {'min':>10} {'max':>10}  target")
    for f in figures:
        if not f.runs:  # not measured, the target says why
            print(f"{f.name:72} {'—':>12} {'—':>10} {'—':>10}  {f.target}")
            continue
        lo, hi = min(f.runs), max(f.runs)
        mark = {True: "met", False: "MISSED", None: ""}[f.meets]
        print(f"{f.name:72} {f.median:>10.2f}{f.unit[:2]:>2} {lo:>10.2f} {hi:>10.2f}  {f.target} {mark}")


def write_json(figures: list[Figure], path: Path, quick: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"quick": quick, "environment": environment(), "figures": [f.as_dict() for f in figures]}
    path.write_text(json.dumps(body, indent=2))
    print(f"\nwritten: {path}")
