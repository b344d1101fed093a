"""Every authentication and scope case of API.md §0."""

from __future__ import annotations

import time

import jwt
import pytest

from shared.testing.fixtures import JWT_SECRET


def _token(**claims):
    payload = {
        "sub": "1",
        "username": "u",
        "exp": int(time.time()) + 60,
        "brands": [{"id": 9, "name": "H", "role": "admin"}],
    }
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, JWT_SECRET, algorithm="HS256")


def _unsigned(payload):
    import base64
    import json

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "AUTHENTICATION_FAILED"),
        ("Bearer", "AUTHENTICATION_FAILED"),
        ("Basic dXNlcjpwYXNz", "AUTHENTICATION_FAILED"),
        ("Bearer not.a.jwt", "AUTHENTICATION_FAILED"),
        (
            "Bearer "
            + jwt.encode(
                {"sub": "1", "exp": int(time.time()) + 60, "brands": []},
                "another-secret-" + "y" * 40,
                algorithm="HS256",
            ),
            "AUTHENTICATION_FAILED",
        ),
        (
            "Bearer "
            + _unsigned({"sub": "1", "exp": int(time.time()) + 60, "brands": [{"id": 9, "role": "admin"}]}),
            "AUTHENTICATION_FAILED",
        ),
        ("Bearer " + _token(exp=int(time.time()) - 3600), "TOKEN_EXPIRED"),
        ("Bearer " + _token(exp=None), "AUTHENTICATION_FAILED"),
        ("Bearer " + _token(nbf=int(time.time()) + 3600), "AUTHENTICATION_FAILED"),
    ],
    ids=[
        "missing",
        "empty",
        "basic",
        "garbage",
        "bad-signature",
        "alg-none",
        "expired",
        "no-exp",
        "not-yet-valid",
    ],
)
def test_bad_tokens_are_401(client, authorization, code):
    headers = {"X-Brand-ID": "9"}
    if authorization:
        headers["Authorization"] = authorization
    response = client.get("/tasks/", headers=headers)
    assert response.status_code == 401
    assert response.json["error_code"] == code
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_brand_header_required(client):
    for value in (None, "abc"):
        headers = {"Authorization": "Bearer " + _token()}
        if value:
            headers["X-Brand-ID"] = value
        response = client.get("/tasks/", headers=headers)
        assert response.status_code == 400 and response.json["error_code"] == "BRAND_REQUIRED"


def test_brand_not_in_token(client):
    response = client.get("/tasks/", headers={"Authorization": "Bearer " + _token(), "X-Brand-ID": "77"})
    assert response.status_code == 403 and response.json["error_code"] == "BRAND_ACCESS_DENIED"


def test_viewer_reads_but_never_writes(client, auth, make_task):
    task = make_task()
    viewer = auth.headers(role="viewer")
    assert client.get("/tasks/", headers=viewer).status_code == 200
    for method, url in [
        ("post", "/tasks/"),
        ("patch", f"/tasks/{task['id']}/"),
        ("delete", f"/tasks/{task['id']}/"),
        ("post", f"/tasks/{task['id']}/cancel/"),
    ]:
        response = getattr(client, method)(url, json={"task_type": "x"}, headers=viewer)
        assert response.status_code == 403 and response.json["error_code"] == "PERMISSION_DENIED"


def test_operator_writes(client, auth):
    assert (
        client.post("/tasks/", json={"task_type": "x"}, headers=auth.headers(role="operator")).status_code
        == 201
    )
