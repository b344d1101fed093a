"""`make down` stops every process `make up` started: none is left behind."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from .conftest import Topology

pytestmark = [pytest.mark.integration, pytest.mark.run_last(9)]


def test_make_down_leaves_no_process_behind(topology: Topology) -> None:
    state = json.loads((topology.run_dir / "topology.json").read_text())
    assert len(state["processes"]) >= 3  # web, background, gateway at least
    # supervisord was started in a session of its own: every process it ran is in that session
    session = state["supervisord"]["pid"]
    status = topology.cli("status")
    assert status.returncode == 0, status.stdout
    result = topology.cli("down")
    assert result.returncode == 0, result.stderr
    # nothing of that session may remain running (an exited process may linger as a zombie until
    # this machine's init reaps it: it is gone)
    listed = subprocess.run(
        ["ps", "-o", "pid=,stat=,args=", "-s", str(session)], capture_output=True, text=True
    )
    running = [line for line in listed.stdout.splitlines() if line.split()[1][0] != "Z"]
    assert not running, running
    assert not (topology.run_dir / "topology.json").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(topology.gateway + "/healthz", timeout=2)
