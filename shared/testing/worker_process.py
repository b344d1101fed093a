"""A real worker (`python -m services.worker`) as a child process of a test, on the test's own
broker prefix, its output in a log file the test names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.config import REPO_ROOT
from shared.testing.fixtures import JWT_SECRET


def start_worker_process(
    name: str, amqp_url: str, prefix: str, log: Path, args: list[str], **env: str
) -> subprocess.Popen[bytes]:
    """`args` follow `--name <name>`; `env` adds to (or replaces) the test defaults."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "JWT_SECRET": JWT_SECRET,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": prefix,
        "LOG_FORMAT": "console",
        "TASKHUB_HEARTBEAT_SECONDS": "0.5",
        **env,
    }
    with open(log, "ab") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "services.worker", "--name", name, *args],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )


def kill_worker_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL (a test ends; nothing to drain) the workers still running, and reap them."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
