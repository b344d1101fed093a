"""The `taskhub` distribution holds the SDK, the client and the command and nothing of the
services; a handler package built on it (examples/acme-reports) runs in a worker as shipped."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shared.config import REPO_ROOT
from shared.testing.fixtures import wait_until

EXAMPLE = REPO_ROOT / "examples" / "acme-reports"


def test_the_wheel_has_the_sdk_client_and_command_but_no_service(tmp_path: Path) -> None:
    # the build backend from this environment: no download, and no network in the test
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("taskhub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.startswith("taskhub-")}
    assert packages == {"taskhub"}
    assert {"taskhub/sdk.py", "taskhub/client.py", "taskhub/cli/commands.py", "taskhub/py.typed"} <= set(
        names
    )
    dist_info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "taskhub = taskhub.cli:main" in zipfile.ZipFile(wheel).read(dist_info).decode()
    metadata = zipfile.ZipFile(wheel).read(dist_info.replace("entry_points.txt", "METADATA")).decode()
    required = {
        line.split(":", 1)[1].strip().split(">")[0].split("<")[0]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist")
    }
    assert required == {"click", "pyjwt", "requests", "rich", "sseclient-py"}


def test_the_old_import_is_the_same_sdk() -> None:
    import services.worker.sdk as old
    import taskhub.sdk as new

    assert old.task is new.task and old.registry is new.registry and old.TaskContext is new.TaskContext


def test_a_handler_package_runs_in_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth: object
) -> None:
    from shared.testing.embedded_platform import embedded_core_and_worker

    monkeypatch.syspath_prepend(str(EXAMPLE))  # as `pip install examples/acme-reports` would
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TASKHUB_HANDLER_MODULES", "acme_reports.handlers")
    headers = auth.headers()  # type: ignore[attr-defined]
    with embedded_core_and_worker(monkeypatch, tmp_path) as client:

        def announced() -> dict[str, dict]:
            listed = client.get("/tasks/types/", headers=headers).json["task_types"]
            types = {t["task_type"]: t for t in listed}
            return types if "acme.report" in types else {}

        types = wait_until(announced, 15, message="the worker announced ACME's types")
        assert types["acme.report"]["priority"] == "high" and types["acme.archive"]["persistent"] is True
        created = client.post(
            "/tasks/", json={"task_type": "acme.report", "context_data": {"rows": 250}}, headers=headers
        ).json
        done = wait_until(
            lambda: (lambda t: t if t["status"] == "completed" else None)(
                client.get(f"/tasks/{created['id']}/", headers=headers).json
            ),
            20,
            message="acme.report completed",
        )
        assert done["result_data"]["rows"] == 250 and done["queue_name"] == "high"
