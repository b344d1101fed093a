"""The event contract as the tests read it: docs/events/<type>.json (JSON Schema 2020-12, the files
docs/asyncapi.yaml references), resolved against each other by their `$id`s."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from shared.config import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "docs" / "events"
NOT_EVENTS = {"envelope", "work.message"}


def schema_files() -> dict[str, Path]:
    return {path.name.removesuffix(".json"): path for path in sorted(SCHEMA_DIR.glob("*.json"))}


@cache
def registry() -> Registry:
    resources = [Resource.from_contents(json.loads(path.read_text())) for path in schema_files().values()]
    return Registry().with_resources((resource.contents["$id"], resource) for resource in resources)


@cache
def validator(name: str) -> Draft202012Validator | None:
    """The validator of an event type (or of `work.message`); None if the contract lacks it."""
    path = schema_files().get(name)
    if path is None:
        return None
    return Draft202012Validator(
        json.loads(path.read_text()), registry=registry(), format_checker=FormatChecker()
    )


def event_types() -> set[str]:
    return set(schema_files()) - NOT_EVENTS
