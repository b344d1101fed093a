"""nginx running the rendered gateway config (gateway/render.py) from a test's own folder, in
front of servers the test controls. Needs nginx only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy.local.topology import free_port
from gateway.render import GatewayConfig, render
from shared.testing.fixtures import wait_until

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
requires_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not installed")


def nginx_command(prefix: Path, *flags: str) -> list[str]:
    """nginx with its prefix, `nginx.conf` and error log in `prefix`."""
    assert NGINX is not None
    files = ["-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    return [NGINX, *flags, *files]


class LocalGateways:
    """Starts gateways in `prefix` (one at a time: they share its nginx.conf); `close` stops them."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, upstreams: dict[str, list[str]], **options: Any) -> str:
        """The gateway's URL once it answers; `options` are GatewayConfig's."""
        port = free_port()
        (self.prefix / "temp").mkdir(exist_ok=True)
        config = GatewayConfig(f"127.0.0.1:{port}", upstreams, prefix_dir=self.prefix, **options)
        (self.prefix / "nginx.conf").write_text(render(config))
        command = nginx_command(self.prefix)
        self.started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, 10, 0.05, "nginx is listening")
        return url

    def close(self) -> None:
        for process in self.started:
            process.terminate()
            process.wait(10)
