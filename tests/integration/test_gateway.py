"""The gateway's own behaviour, seen by a client of the `make up` topology (docs/api.md §0)."""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import pytest
import requests

from shared.testing.fixtures import wait_until

from .conftest import TEST_BURST, Topology

pytestmark = pytest.mark.integration

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_gateway_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error_code"] == code and body["detail"]
    assert response.headers["X-Request-ID"]


def test_request_id_is_kept_when_safe_and_generated_otherwise(topology: Topology) -> None:
    kept = topology.get("/tasks/", headers={**topology.headers(), "X-Request-ID": "it-client.42:a"})
    assert kept.status_code == 200
    assert kept.headers["X-Request-ID"] == "it-client.42:a"
    # exactly one X-Request-ID: the service's echo is replaced by the gateway's, not doubled
    assert "," not in kept.headers["X-Request-ID"]

    generated = topology.get("/tasks/")
    assert GENERATED_ID.match(generated.headers["X-Request-ID"])

    unsafe = topology.get("/tasks/", headers={**topology.headers(), "X-Request-ID": "bad id;<script>"})
    assert GENERATED_ID.match(unsafe.headers["X-Request-ID"])

    # errors made by nginx itself carry it too
    missing = topology.get("/no-such-prefix/", headers={"X-Request-ID": "it-404"})
    assert missing.headers["X-Request-ID"] == "it-404"


def test_unknown_prefix_is_a_json_404(topology: Topology) -> None:
    for path in ("/", "/nope/", "/task/", "/metrics", "/docs/nope/"):
        assert_gateway_error(topology.session.get(topology.gateway + path, timeout=5), 404, "NOT_FOUND")


def test_body_over_the_limit_is_a_json_413(topology: Topology) -> None:
    oversized = b'{"task_type": "example.noop", "description": "' + b"x" * (1024 * 1024) + b'"}'
    response = topology.session.post(
        topology.gateway + "/tasks/",
        data=oversized,
        headers={**topology.headers(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert_gateway_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_method_nginx_refuses_is_a_json_405(topology: Topology) -> None:
    response = topology.session.request("TRACE", topology.gateway + "/tasks/", timeout=5)
    assert_gateway_error(response, 405, "METHOD_NOT_ALLOWED")


def test_a_burst_from_one_client_is_limited_with_json_429(topology: Topology) -> None:
    # Another loopback address is another client for limit_req: the rest of the suite is unaffected.
    address = urlsplit(topology.gateway)
    assert address.hostname is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, source_address=("127.0.0.2", 0))
    statuses, limited_body, retry_after = [], None, None
    for _ in range(TEST_BURST * 3):
        connection.request("GET", "/tasks/", headers=topology.headers())
        response = connection.getresponse()
        payload = response.read()
        statuses.append(response.status)
        if response.status == 429:
            limited_body, retry_after = json.loads(payload), response.getheader("Retry-After")
    connection.close()
    assert statuses[:TEST_BURST] == [200] * TEST_BURST  # the burst is served at once (nodelay)
    assert statuses.count(429) >= TEST_BURST // 2
    assert set(statuses) <= {200, 429}  # never a 503 for being too fast
    assert limited_body is not None and limited_body["error_code"] == "RATE_LIMITED"
    assert retry_after == "1"
    # the default client was not limited by that
    assert topology.get("/tasks/").status_code == 200


def test_json_is_gzipped_and_forwarded_headers_make_public_links(topology: Topology) -> None:
    for _ in range(3):
        assert topology.post("/tasks/", {"task_type": "example.noop"}).status_code == 201
    response = topology.get(
        "/tasks/?page_size=1&ordering=-created_at", headers={**topology.headers(), "Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200
    # `next` is the URL as the client sees it: the gateway's host and port, not the service's
    assert response.json()["next"].startswith(topology.gateway + "/tasks/?")
    docs = topology.session.get(
        topology.gateway + "/docs/core/openapi.json", headers={"Accept-Encoding": "gzip"}, timeout=5
    )
    assert docs.status_code == 200 and docs.headers.get("Content-Encoding") == "gzip"
    assert docs.json()["info"]["title"]


@pytest.mark.parametrize("service", ["core", "monitoring", "persistence", "scheduling"])
def test_every_service_is_reached_through_its_prefix(topology: Topology, service: str) -> None:
    response = topology.session.get(f"{topology.gateway}/docs/{service}/openapi.json", timeout=5)
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert paths, f"{service} documents no path"
    # a path of its OpenAPI document, through the gateway, reaches that service (auth answers)
    first = next(p for p in paths if "{" not in p)
    answer = topology.session.get(topology.gateway + first, timeout=5)
    assert answer.status_code in (200, 400, 401, 403, 405), (first, answer.text)
    assert answer.headers["Content-Type"].startswith("application/json")


def test_a_stopped_service_is_a_json_502_and_then_serves_again_with_nothing_lost(
    topology: Topology,
) -> None:
    created = topology.post("/tasks/", {"task_type": "example.noop", "description": "kept"})
    assert created.status_code == 201
    task = created.json()
    topology.stop("core-web")
    try:
        down = topology.get(
            f"/tasks/{task['id']}/", headers={**topology.headers(), "X-Request-ID": "it-down"}
        )
        assert down.status_code in (502, 503)
        assert down.json()["error_code"] == "SERVICE_UNAVAILABLE"
        assert down.headers["X-Request-ID"] == "it-down"
        assert down.headers["Retry-After"]
        refused = topology.post("/tasks/", {"task_type": "example.noop"})
        assert refused.status_code in (502, 503) and refused.json()["error_code"] == "SERVICE_UNAVAILABLE"
    finally:
        topology.start("core-web")
    back = wait_until(lambda: (r := topology.get(f"/tasks/{task['id']}/")).status_code == 200 and r, 20)
    assert back.json()["description"] == "kept"
    assert back.json()["task_id"] == task["task_id"]


def test_a_long_request_line_reaches_the_service_and_gets_json(topology: Topology) -> None:
    """Between gunicorn's old 4 KiB request-line limit and nginx's: gunicorn used to answer with
    its own HTML 400; now the service answers (here: `search` is too long, a JSON 400)."""
    response = topology.get("/tasks/?search=" + "x" * 6000)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["field_errors"]["search"]


def test_a_path_without_its_trailing_slash_is_answered_not_redirected(topology: Topology) -> None:
    response = topology.session.get(
        topology.gateway + "/tasks/monitoring/metrics",
        headers=topology.headers(),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["results"] == [] or "count" in response.json()
    listed = topology.session.get(
        topology.gateway + "/tasks", headers=topology.headers(), allow_redirects=False, timeout=5
    )
    assert listed.status_code == 200 and "results" in listed.json()
    anonymous = topology.session.get(topology.gateway + "/tasks", allow_redirects=False, timeout=5)
    assert_gateway_error(anonymous, 401, "AUTHENTICATION_FAILED")
