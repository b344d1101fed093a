"""How the generated gateway treats its upstreams, with nginx in front of small local HTTP servers
whose behaviour the test controls (reliability.md §6 and §7.15): a slow service is a JSON 504
within the read timeout, a refused connection moves a GET to the next server, and a POST that
reached a server is never replayed on another one. Needs nginx only."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from shared.testing.local_http import LocalHttpServer, QuietHandler

from .nginx_gateway import LocalGateways, requires_nginx

pytestmark = requires_nginx
StartGateway = Callable[..., str]


class Upstream(LocalHttpServer):
    """An HTTP server answering 200 JSON, or sleeping first when `slow` is set; counts requests."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.slow = 0.0
        upstream = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                upstream.hits[self.command] += 1
                time.sleep(upstream.slow)
                self.send_json(b'{"ok": true}')

            do_GET = do_POST = _answer  # noqa: N815 - the names http.server dispatches to

        super().__init__(Handler)


def closed_address() -> str:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StartGateway]:
    gateways = LocalGateways(tmp_path)

    def start(servers: list[str], read_timeout_s: int = 60) -> str:
        return gateways.start({"core": servers}, read_timeout_s=read_timeout_s)

    yield start
    gateways.close()


def test_a_slow_service_is_a_json_504_within_the_read_timeout(gateway: StartGateway) -> None:
    upstream = Upstream()
    upstream.slow = 3.0
    try:
        url = gateway([upstream.address], read_timeout_s=1)
        began = time.monotonic()
        response = requests.get(url + "/tasks/", timeout=10)
        elapsed = time.monotonic() - began
    finally:
        upstream.close()
    assert response.status_code == 504
    assert response.json()["error_code"] == "GATEWAY_TIMEOUT"
    assert elapsed < 2.0  # timeout + 1 s


def test_a_refused_connection_moves_a_get_to_the_next_server(gateway: StartGateway) -> None:
    upstream = Upstream()
    try:
        url = gateway([closed_address(), upstream.address])
        statuses = [requests.get(url + "/tasks/", timeout=5).status_code for _ in range(4)]
    finally:
        upstream.close()
    assert statuses == [200] * 4


def test_a_post_that_reached_a_server_is_never_replayed_on_another(gateway: StartGateway) -> None:
    first, second = Upstream(), Upstream()
    first.slow = second.slow = 3.0
    try:
        url = gateway([first.address, second.address], read_timeout_s=1)
        response = requests.post(url + "/tasks/", json={"task_type": "example.noop"}, timeout=10)
    finally:
        first.close()
        second.close()
    assert response.status_code == 504
    # nginx answered 504 only after deciding against a retry: a replay would already be counted
    assert first.hits["POST"] + second.hits["POST"] == 1
