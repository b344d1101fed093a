"""Every authentication and scope case of docs/api.md §0."""

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


# ---- issue 13: JWT hardening (finding 9) and machine identities (findings 8, 14)


def _bearer(token):
    return {"Authorization": f"Bearer {token}", "X-Brand-ID": "9"}


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 253402300799},  # year 9999: a token for ever
        {"iat": int(time.time()), "exp": int(time.time()) + 30 * 24 * 3600},  # beyond the maximum lifetime
        {"machine": True, "brands": []},  # the broad machine tokens of old: operator in every brand
    ],
    ids=["exp-9999", "thirty-days", "machine-true"],
)
def test_tokens_that_live_too_long_or_claim_everything_are_401(client, claims):
    response = client.get("/tasks/", headers=_bearer(_token(**claims)))
    assert (response.status_code, response.json["error_code"]) == (401, "AUTHENTICATION_FAILED")


@pytest.mark.parametrize("brand_id", [True, 9.0, "9", [9]], ids=["true", "float", "string", "list"])
def test_a_brand_id_is_strictly_an_integer(client, brand_id):
    token = _token(brands=[{"id": brand_id, "name": "H", "role": "admin"}])
    response = client.get(
        "/tasks/", headers={**_bearer(token), "X-Brand-ID": "1" if brand_id is True else "9"}
    )
    assert (response.status_code, response.json["error_code"]) == (403, "BRAND_ACCESS_DENIED")


@pytest.mark.parametrize("role", [["admin"], {"admin": 1}, None, "root"])
def test_a_role_of_the_wrong_type_is_403_not_500(client, role):
    response = client.get("/tasks/", headers=_bearer(_token(brands=[{"id": 9, "role": role}])))
    assert (response.status_code, response.json["error_code"]) == (403, "BRAND_ACCESS_DENIED")


@pytest.mark.parametrize("value", ["--9", "²", "9" * 40, " 9x"])
def test_odd_brand_headers_are_400(client, value):
    response = client.get("/tasks/", headers={"Authorization": "Bearer " + _token(), "X-Brand-ID": value})
    assert (response.status_code, response.json["error_code"]) == (400, "BRAND_REQUIRED")


def _grant(issuer, scope, brand_id=9, **claims):
    from shared.machine_identity import machine_issuer
    from shared.testing.fixtures import make_settings

    minted = machine_issuer(make_settings("x", "sqlite://"), issuer)
    assert minted is not None
    return minted.mint(scope, brand_id, f"machine:{issuer}", 60, **claims)


def _schedules_run(client, auth, slot="2030-01-01T00:00:00.000Z"):
    from shared.machine_identity import SCHEDULE_RUN, SCHEDULING

    key = f"periodic:5:{slot}"
    origin = {"periodic_task_id": 5, "cron_job_id": None, "planned_time": slot}
    signed = _grant(SCHEDULING, SCHEDULE_RUN, key=key, origin=origin)
    created = client.post(
        "/tasks/",
        json={"task_type": "x"},
        headers=auth.headers(**{"Idempotency-Key": key, "X-Schedule-Origin": signed}),
    )
    assert created.status_code == 201, created.json
    return created.json


def test_the_scheduler_cancels_the_one_run_its_grant_names(client, auth, make_task):
    from shared.machine_identity import CANCEL_RUN, SCHEDULING

    named, other = _schedules_run(client, auth), _schedules_run(client, auth, "2030-01-02T00:00:00.000Z")
    users = make_task()
    not_a_run = client.post(
        f"/tasks/{users['id']}/cancel/", headers=_bearer(_grant(SCHEDULING, CANCEL_RUN, task=users["id"]))
    )
    assert (not_a_run.status_code, not_a_run.json["error_code"]) == (403, "PERMISSION_DENIED")
    grant = _grant(SCHEDULING, CANCEL_RUN, task=named["id"])
    refused = client.post(f"/tasks/{other['id']}/cancel/", headers=_bearer(grant))
    assert (refused.status_code, refused.json["error_code"]) == (403, "PERMISSION_DENIED")
    for method, url in (("get", "/tasks/"), ("delete", f"/tasks/{named['id']}/"), ("post", "/tasks/")):
        response = getattr(client, method)(url, json={"task_type": "x"}, headers=_bearer(grant))
        assert (response.status_code, response.json["error_code"]) == (403, "PERMISSION_DENIED"), url
    elsewhere = client.post(f"/tasks/{named['id']}/cancel/", headers={**_bearer(grant), "X-Brand-ID": "10"})
    assert elsewhere.status_code == 403
    assert client.post(f"/tasks/{named['id']}/cancel/", headers=_bearer(grant)).status_code == 200


def test_a_grant_for_another_service_is_401_here(client, make_task):
    from shared.machine_identity import ATTEMPT, CORE

    task = make_task()
    response = client.get(
        f"/tasks/{task['id']}/", headers=_bearer(_grant(CORE, ATTEMPT, task=task["id"], attempt=1))
    )
    assert (response.status_code, response.json["error_code"]) == (401, "AUTHENTICATION_FAILED")


def test_x_schedule_origin_from_a_client_is_refused(client, auth):
    """Finding 14: the header marked any task as a schedule's run (is_periodic, origin) and could
    pre-claim the brand's next slot keys."""
    import json

    origin = json.dumps({"periodic_task_id": 1, "cron_job_id": None, "planned_time": "2030-01-01T00:00:00Z"})
    response = client.post(
        "/tasks/",
        json={"task_type": "x"},
        headers=auth.headers(
            role="operator",
            **{"Idempotency-Key": "periodic:1:2030-01-01T00:00:00.000Z", "X-Schedule-Origin": origin},
        ),
    )
    assert response.status_code == 400 and "X-Schedule-Origin" in response.json["field_errors"]
    assert client.get("/tasks/?is_periodic=true", headers=auth.headers()).json["count"] == 0


def test_x_schedule_origin_signed_by_scheduling_for_this_key_marks_the_run(client, auth):
    from shared.machine_identity import SCHEDULE_RUN, SCHEDULING

    key = "periodic:5:2030-01-01T00:00:00.000Z"
    origin = {"periodic_task_id": 5, "cron_job_id": None, "planned_time": "2030-01-01T00:00:00.000Z"}
    for wrong in (
        _grant(SCHEDULING, SCHEDULE_RUN, key="periodic:5:other", origin=origin),
        _grant(SCHEDULING, SCHEDULE_RUN, brand_id=10, key=key, origin=origin),
    ):
        refused = client.post(
            "/tasks/",
            json={"task_type": "x"},
            headers=auth.headers(**{"Idempotency-Key": key, "X-Schedule-Origin": wrong}),
        )
        assert refused.status_code == 400
    signed = _grant(SCHEDULING, SCHEDULE_RUN, key=key, origin=origin)
    created = client.post(
        "/tasks/",
        json={"task_type": "x"},
        headers=auth.headers(**{"Idempotency-Key": key, "X-Schedule-Origin": signed}),
    )
    assert created.status_code == 201 and created.json["is_periodic"] is True
