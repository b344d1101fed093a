"""The README's table from a results file: verdicts, a figure that could not be measured, a filter."""

from bench.markdown import table
from bench.stats import Figure

ENVIRONMENT = {
    "date": "2026-12-05T00:00:00+00:00",
    "machine": "x86_64, 2 cores",
    "python": "3.11.7",
    "postgresql": "psql 15",
    "rabbitmq": "3.10.8",
    "nginx": "nginx/1.22.1",
    "packages": {},
}


def _body(*figures: Figure) -> dict:
    return {"quick": False, "environment": ENVIRONMENT, "figures": [f.as_dict() for f in figures]}


def test_rows_carry_median_min_max_and_the_verdict() -> None:
    text = table(_body(Figure("e2e ratio taskhub / celery", "x", (0.5, 0.7, 0.6), ">= 1.0", False)))
    assert "| e2e ratio taskhub / celery | 0.60 x | 0.50 | 0.70 | >= 1.0 ❌ missed |" in text


def test_a_figure_not_measured_shows_dashes_and_why() -> None:
    text = table(
        _body(Figure("e2e bulk throughput", "t/s", (), "not available: POST /tasks/bulk/ does not exist"))
    )
    assert "| e2e bulk throughput | — | — | — | not available: POST /tasks/bulk/ does not exist |" in text


def test_match_keeps_only_the_figures_named() -> None:
    body = _body(Figure("idle CPU: core-web", "%", (1.0,)), Figure("e2e ratio taskhub / celery", "x", (1.1,)))
    text = table(body, ["ratio"])
    assert "e2e ratio" in text and "idle CPU" not in text
