"""The gateway at the edge of a hostile network (issue 13, finding 16), nginx in front of a small
local service that echoes what reached it: every answer nginx makes itself is JSON, forwarded
headers are believed only from the configured proxies, and the per-brand rate limit is keyed by
the brand whatever the client address. Needs nginx only."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.testing.local_http import LocalHttpServer, QuietHandler

from .nginx_gateway import LocalGateways, requires_nginx

pytestmark = requires_nginx
StartGateway = Callable[..., str]


class Echo(LocalHttpServer):
    """Answers 200 with the request headers it received, as JSON."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                self.send_json(json.dumps({k.lower(): v for k, v in self.headers.items()}).encode())

        super().__init__(Handler)


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def gateway(tmp_path: Path, echo: Echo) -> Iterator[StartGateway]:
    gateways = LocalGateways(tmp_path)
    yield lambda **options: gateways.start({"core": [echo.address]}, **options)
    gateways.close()


def raw(url: str, request: bytes, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (requests would refuse to send most of these) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_json_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, (got, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    payload = json.loads(body)
    assert payload["error_code"] == code and payload["detail"]


def test_a_header_over_the_buffer_is_a_json_400(gateway: StartGateway) -> None:
    url = gateway()
    request = b"GET /tasks/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n"
    assert_json_error(raw(url, request), 400, "HEADERS_TOO_LARGE")


def test_an_unknown_transfer_encoding_is_a_json_501(gateway: StartGateway) -> None:
    url = gateway()
    request = (
        b"POST /tasks/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
    )
    assert_json_error(raw(url, request), 501, "NOT_IMPLEMENTED")


def test_an_unsupported_http_version_is_a_json_505(gateway: StartGateway) -> None:
    url = gateway()
    assert_json_error(raw(url, b"GET /tasks/ HTTP/3.0\r\nHost: x\r\n\r\n"), 505, "HTTP_VERSION_NOT_SUPPORTED")


def test_a_request_line_over_the_limit_is_a_json_414(gateway: StartGateway) -> None:
    url = gateway()
    request = b"GET /tasks/?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert_json_error(raw(url, request), 414, "URI_TOO_LONG")


def test_forwarded_headers_are_believed_only_from_trusted_proxies(gateway: StartGateway) -> None:
    url = gateway(behind_proxy=True, trusted_networks=("127.0.0.2/32",))
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/x"}
    request = (
        b"GET /tasks/ HTTP/1.1\r\nHost: gw.local\r\nConnection: close\r\n"
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in forged.items())
        + b"\r\n"
    )
    _, _, from_client = raw(url, request, source="127.0.0.1")
    seen = json.loads(from_client)
    assert seen["x-forwarded-host"] == "gw.local"
    assert seen["x-forwarded-proto"] == "http"
    assert seen.get("x-forwarded-prefix", "") == ""

    _, _, from_proxy = raw(url, request, source="127.0.0.2")
    seen = json.loads(from_proxy)
    assert (seen["x-forwarded-host"], seen["x-forwarded-proto"], seen["x-forwarded-prefix"]) == (
        "evil.example",
        "https",
        "/x",
    )


def test_the_brand_rate_limit_is_keyed_by_brand_across_client_addresses(gateway: StartGateway) -> None:
    url = gateway(rate="1000r/s", burst=1000, brand_rate="1r/m", brand_burst=5)

    def status(brand: str, source: str) -> int:
        request = f"GET /tasks/ HTTP/1.1\r\nHost: x\r\nX-Brand-ID: {brand}\r\nConnection: close\r\n\r\n"
        return raw(url, request.encode(), source=source)[0]

    # brand 9 from two addresses shares one budget: 1 + 5 burst, then 429
    statuses = [status("9", f"127.0.0.{2 + i % 2}") for i in range(10)]
    assert statuses[:6] == [200] * 6 and statuses[6:] == [429] * 4
    # another brand, from the same addresses, is not limited by brand 9's traffic
    assert status("10", "127.0.0.2") == 200
    limited = raw(url, b"GET /tasks/ HTTP/1.1\r\nHost: x\r\nX-Brand-ID: 9\r\nConnection: close\r\n\r\n")
    assert_json_error(limited, 429, "RATE_LIMITED")
    assert limited[1]["retry-after"] == "1"


def test_metrics_and_unknown_paths_are_not_served_through_the_gateway(gateway: StartGateway) -> None:
    url = gateway()
    for path in ("/metrics", "/readyz", "/tasks/../metrics"):
        answer = raw(url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert_json_error(answer, 404, "NOT_FOUND")
