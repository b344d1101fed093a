"""Every operation of every service documents what it really answers (issue 13): its success body
and the error statuses of the shared layer, 400 for validation (never webargs' 422)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from shared.routes import SERVICES
from shared.testing.responses import json_body

from .schemathesis_run import SECRET

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def documents() -> Iterator[dict[str, dict[str, Any]]]:
    from shared.embedded import build_platform

    with tempfile.TemporaryDirectory() as data_dir:
        saved = dict(os.environ)
        os.environ.update(JWT_SECRET=SECRET, TASKHUB_DATA_DIR=data_dir, LOG_LEVEL="ERROR")
        try:
            router, _ = build_platform()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        client = Client(router)
        yield {service: json_body(client.get(f"/docs/{service}/openapi.json")) for service in SERVICES}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_documents_its_answers(documents: dict[str, dict[str, Any]], service: str) -> None:
    problems = []
    for path, method, operation in operations(documents[service]):
        responses = operation["responses"]
        name = f"{method.upper()} {path}"
        success = [code for code in responses if code.startswith("2")]
        if not success:
            problems.append(f"{name}: no success response")
        for code in success:
            if code != "204" and "content" not in responses[code]:
                problems.append(f"{name}: {code} has no body schema")
        wanted = {"400", "401", "403", "429"}
        if "{" in path or any(p.get("name") == "page" for p in operation.get("parameters", [])):
            wanted.add("404")
        if "requestBody" in operation:
            wanted |= {"413", "415"}
        if missing := wanted - set(responses):
            problems.append(f"{name}: undocumented {sorted(missing)}")
        if "422" in responses:
            problems.append(f"{name}: documents 422, the services answer 400")
    assert not problems, "\n".join(problems)


def test_the_services_document_about_a_hundred_operations(documents: dict[str, dict[str, Any]]) -> None:
    count = sum(1 for document in documents.values() for _ in operations(document))
    assert count >= 95, count  # a blueprint that stopped registering would shrink this
