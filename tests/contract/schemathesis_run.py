"""schemathesis against each service's own OpenAPI document, as a hostile client would.

The whole platform runs in this process as `make run` builds it (every service app behind the
prefix router, the in-process bus and the services' background loops), on PostgreSQL databases
when DATABASE URLs are given and SQLite files otherwise, served by werkzeug on a free loopback
port. Each service's document (`/docs/<service>/openapi.json`) is then fuzzed by the `st` command
with every phase (examples, coverage, fuzzing, stateful) and the checks below, within a fixed
time budget per service.

    python -m tests.contract.schemathesis_run [--seconds 40] [service ...]

exits non-zero when any check fails; `tests/contract/test_schemathesis.py` runs it under pytest.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.auth import mint_token
from shared.routes import SERVICES

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SECONDS_PER_SERVICE = 40
SECRET = "schemathesis-only-secret-" + "s" * 32
BRAND = 9


@dataclass
class Outcome:
    service: str
    returncode: int
    output: str


@contextmanager
def running_platform(database_urls: Mapping[str, str] | None = None) -> Iterator[str]:
    """The embedded platform on a free loopback port; yields its base URL."""
    from werkzeug.serving import make_server

    from shared.background import start_loops
    from shared.embedded import build_platform

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskhub-fuzz-") as data_dir:
        env = {
            "JWT_SECRET": SECRET,
            "TASKHUB_DATA_DIR": data_dir,
            "LOG_LEVEL": "CRITICAL",
            "TASKHUB_CORE_URL": f"http://127.0.0.1:{port}",  # scheduling calls core: this platform's
        }
        for service, url in (database_urls or {}).items():
            env[f"{service.upper()}_DATABASE_URL"] = url
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            router, loops = build_platform()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        stop = threading.Event()
        start_loops(loops, stop)
        server = make_server("127.0.0.1", port, router, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            stop.set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fuzz(base_url: str, service: str, seconds: int, report_dir: Path | None = None) -> Outcome:
    token = mint_token(SECRET, brands=[{"id": BRAND, "name": "Fuzz", "role": "admin"}], ttl_seconds=3600)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{base_url}/docs/{service}/openapi.json",
        "--phases",
        ",".join(PHASES),
        "--checks",
        ",".join(CHECKS),
        "--max-time",
        str(seconds),
        "--workers",
        "1",
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "1"),
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
        "-H",
        f"Authorization: Bearer {token}",
        "-H",
        f"X-Brand-ID: {BRAND}",
    ]
    if report_dir is not None:
        command += ["--report", "junit", "--report-dir", str(report_dir / service)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1", "COLUMNS": "160"}
    with tempfile.TemporaryDirectory(prefix="taskhub-st-") as scratch:  # st keeps its replays there
        result = subprocess.run(
            command, cwd=scratch, env=env, capture_output=True, text=True, timeout=seconds * 4 + 120
        )
    return Outcome(service, result.returncode, result.stdout + result.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    parser.add_argument("--seconds", type=int, default=SECONDS_PER_SERVICE, help="time budget per service")
    parser.add_argument(
        "--postgres", action="store_true", help="fresh databases from TEST_DATABASE_ADMIN_URL, not SQLite"
    )
    args = parser.parse_args(argv)
    failed = []
    with ExitStack() as stack:
        urls = None
        if args.postgres:
            from shared.testing.fixtures import fresh_postgres_database

            urls = {name: stack.enter_context(fresh_postgres_database()) for name in SERVICES}
        base_url = stack.enter_context(running_platform(urls))
        for service in args.services:
            outcome = fuzz(base_url, service, args.seconds)
            print(outcome.output)
            if outcome.returncode != 0:
                failed.append(service)
    print("schemathesis failed for: " + ", ".join(failed) if failed else "schemathesis: no failures")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
