"""What a Prometheus server sees: a /metrics scrape of an app, and the samples of its text."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def scrape(client: Any) -> str:
    """The text of one /metrics scrape through a Flask test client (it must answer 200)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.data[:500]
    assert response.content_type.startswith("text/plain")
    text: str = response.get_data(as_text=True)
    return text


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of `name` in an exposition, with its labels (a name shown twice is a bug the
    parser does not hide: each occurrence is listed)."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample of `name` with exactly `labels`, None if absent; two such samples
    fail (one scrape must give a figure once)."""
    found = [value for got, value in samples(text, name) if got == labels]
    assert len(found) <= 1, f"{name} {labels} is exported {len(found)} times"
    return found[0] if found else None
