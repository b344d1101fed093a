"""The operator console in real headless Chromium, through the gateway of the `make up` topology:
signing in, a task created and watched to completion, a running task cancelled, a batch job paused
and resumed, a plot drawn, and what a viewer may not do. Every wait is Playwright's wait on a
condition with a deadline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from shared.testing.fixtures import DEFAULT_BRAND, wait_until

from .browser import ConsolePage, browser_context  # noqa: F401 - the fixture
from .conftest import Topology

pytestmark = pytest.mark.integration


@pytest.fixture
def console(browser_context: Any, topology: Topology) -> Iterator[ConsolePage]:  # noqa: F811
    page = ConsolePage(browser_context.new_page(), topology.gateway)
    try:
        yield page
        assert page.script_errors == [], page.script_errors
    finally:
        page.page.close()


def create(topology: Topology, task_type: str, **context: Any) -> dict[str, Any]:
    response = topology.post("/tasks/", {"task_type": task_type, "context_data": context})
    assert response.status_code == 201, response.text
    return response.json()


def test_console_is_served_by_the_gateway_with_its_own_headers(topology: Topology) -> None:
    index = topology.session.get(f"{topology.gateway}/console/", timeout=10)
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in index.headers["Content-Security-Policy"]
    script = topology.session.get(f"{topology.gateway}/console/app.js", timeout=10)
    assert script.headers["Content-Type"].startswith("text/javascript")
    bare = topology.session.get(f"{topology.gateway}/console", allow_redirects=False, timeout=10)
    assert bare.status_code == 301 and bare.headers["Location"] == "/console/"
    missing = topology.session.get(f"{topology.gateway}/console/nothing-here.js", timeout=10)
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"


def test_sign_in_with_a_token_and_see_the_apis_detail_for_a_bad_one(
    console: ConsolePage, topology: Topology
) -> None:
    console.page.goto(f"{topology.gateway}/console/")
    form = console.testid("signin")
    form.locator("textarea[name=token]").fill("not-a-token")
    form.locator("input[name=brand]").fill("9")
    form.get_by_role("button", name="Sign in").click()
    expect(console.testid("error")).to_contain_text("not a JWT")

    forged = topology.auth.token("admin")[:-4] + "AAAA"  # a bad signature: the API says 401
    form.locator("textarea[name=token]").fill(forged)
    form.get_by_role("button", name="Sign in").click()
    expect(console.testid("error")).to_contain_text("AUTHENTICATION_FAILED")

    form.locator("textarea[name=token]").fill(topology.auth.token("operator"))
    expect(form.locator("select[name=brand]")).to_have_value(str(DEFAULT_BRAND["id"]))
    form.get_by_role("button", name="Sign in").click()
    expect(console.testid("who")).to_contain_text("operator")
    expect(console.testid("tasks").or_(console.testid("tasks-empty"))).to_be_visible()


def test_create_a_task_and_watch_it_complete_without_reloading(
    console: ConsolePage, topology: Topology
) -> None:
    console.sign_in(topology.auth.token("operator"))
    console.testid("new-task").click()
    form = console.testid("new-task-form")
    form.locator("input[name=task_type]").fill("example.sleep")
    form.locator("textarea[name=context_data]").fill('{"seconds": 2, "steps": 4}')
    form.get_by_role("button", name="Create").click()

    detail = console.testid("task-detail")
    expect(detail).to_be_visible()
    task_pk = int(re.search(r"#/tasks/(\d+)", console.page.url).group(1))  # type: ignore[union-attr]
    expect(detail.get_by_test_id("status").first).to_have_text("completed", timeout=30_000)
    expect(detail.get_by_test_id("progress").first).to_have_text("100%")
    expect(console.testid("result")).to_contain_text('"slept": 2')
    expect(console.testid("history")).to_contain_text("running")

    # the list shows a task created elsewhere and follows it to its end, without a reload
    console.open("/tasks")
    other = create(topology, "example.sleep", seconds=2, steps=2)
    row = console.page.locator(f"[data-task-id='{other['id']}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(row.get_by_test_id("status")).to_have_text("completed", timeout=30_000)
    assert console.page.locator(f"[data-task-id='{task_pk}']").is_visible()


def test_cancel_a_running_task(console: ConsolePage, topology: Topology) -> None:
    task = create(topology, "example.sleep", seconds=60, steps=60)
    console.sign_in(topology.auth.token("operator"))
    console.open(f"/tasks/{task['id']}")
    status = console.testid("task-detail").get_by_test_id("status").first
    expect(status).to_have_text("running", timeout=30_000)
    console.testid("cancel").click()
    expect(status).to_have_text("cancelled", timeout=15_000)
    expect(console.testid("cancel")).to_have_count(0)
    wait_until(
        lambda: topology.get(f"/tasks/{task['id']}/").json()["status"] == "cancelled",
        timeout=10,
        interval=0.2,
        message="the API agrees the task is cancelled",
    )


def test_pause_and_resume_a_batch_job(console: ConsolePage, topology: Topology) -> None:
    task = create(topology, "example.batch", items=400, batch_size=4, delay=0.1)
    job = wait_until(
        lambda: (
            topology.get("/tasks/persistent-jobs/persistent-jobs/", params={"base_task": task["id"]}).json()[
                "results"
            ]
            or [None]
        )[0],
        timeout=15,
        interval=0.2,
        message="the batch task's persistent job",
    )
    console.sign_in(topology.auth.token("operator"))
    console.open(f"/jobs/{job['id']}")
    status = console.testid("job-detail").get_by_test_id("status").first
    expect(status).to_have_text("running", timeout=30_000)
    console.testid("pause").click()
    expect(status).to_have_text("paused", timeout=20_000)
    expect(console.testid("checkpoints")).to_contain_text("batch")
    paused_at = topology.get(f"/tasks/persistent-jobs/persistent-jobs/{job['id']}/").json()
    assert 0 < paused_at["progress_percentage"] < 100

    console.testid("resume").click()
    expect(status).to_have_text(re.compile("running|completed"), timeout=20_000)
    expect(status).to_have_text("completed", timeout=60_000)
    finished = topology.get(f"/tasks/{task['id']}/").json()
    assert finished["result_data"] == {"processed": 400, "processed_twice": 0}


def test_monitoring_draws_the_p95_plot(console: ConsolePage, topology: Topology) -> None:
    done = create(topology, "example.noop")
    wait_until(
        lambda: topology.get(f"/tasks/{done['id']}/").json()["has_metrics"],
        timeout=30,
        interval=0.2,
        message="the no-op task's metrics reached core",
    )
    console.sign_in(topology.auth.token("viewer"))
    console.open("/monitoring")
    plot = console.testid("plot-p95")
    expect(plot).to_have_attribute("data-points", re.compile(r"[1-9]\d*"), timeout=15_000)
    expect(console.testid("performance-by-type")).to_contain_text("example.noop")
    painted = plot.evaluate(
        """canvas => {
            const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
            let coloured = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && data[i + 2] > data[i] + 60) coloured++;
            return coloured;
        }"""
    )
    assert painted > 100, "the bars (blue pixels) were drawn on the canvas"


def test_a_viewer_gets_no_action_buttons_and_errors_show_the_apis_detail(
    console: ConsolePage, topology: Topology
) -> None:
    task = create(topology, "example.sleep", seconds=30, steps=30)
    try:
        console.sign_in(topology.auth.token("viewer"))
        console.open(f"/tasks/{task['id']}")
        expect(console.testid("task-detail")).to_be_visible()
        expect(console.testid("cancel")).to_have_count(0)
        expect(console.testid("delete")).to_have_count(0)
        console.open("/tasks/999999999")
        expect(console.testid("error")).to_contain_text("TASK_NOT_FOUND")
    finally:
        topology.post(f"/tasks/{task['id']}/cancel/")


def test_schedules_create_run_now_history_and_calendar_events(
    console: ConsolePage, topology: Topology
) -> None:
    console.sign_in(topology.auth.token("operator"))
    console.open("/schedules")
    console.page.get_by_role("button", name="New periodic task").click()
    form = console.page.locator("form.card")
    form.get_by_label("Type").fill("example.noop")
    form.get_by_label("Cron").fill("0 9 * * 1-5")
    form.get_by_label("Time zone").fill("Europe/Paris")
    form.get_by_role("button", name="Create").click()
    notice = form.get_by_test_id("notice")
    expect(notice).to_contain_text("Created periodic task")
    schedule_id = int(re.search(r"periodic task (\d+)", notice.inner_text()).group(1))  # type: ignore[union-attr]

    calendar: dict[str, Any] = {}
    started: list[int] = []
    try:
        row = console.page.locator(f"[data-schedule-id='{schedule_id}']")
        expect(row).to_contain_text("Europe/Paris")
        row.get_by_role("button", name="Run now").click()
        started_notice = console.page.get_by_role("status").filter(has_text="Started task")
        expect(started_notice).to_be_visible()
        started.append(int(re.search(r"Started task (\d+)", started_notice.inner_text()).group(1)))  # type: ignore[union-attr]
        row.get_by_role("button", name=str(schedule_id)).click()
        expect(console.testid("runs")).to_contain_text("manual", timeout=15_000)

        calendar = topology.post(
            "/tasks/scheduled/calendars/", {"name": f"Office days {schedule_id}", "color": "#2563eb"}
        ).json()
        attached = topology.post(
            f"/tasks/scheduled/calendars/{calendar['id']}/tasks/", {"periodic_task": schedule_id}
        )
        assert attached.status_code == 201, attached.text
        console.open(f"/schedules?tab=calendars&calendar={calendar['id']}")
        events = console.testid("calendar-events")
        expect(events).to_contain_text(f"Office days {schedule_id}")
        expect(events.locator(".agenda-day").first).to_contain_text("example.noop")
    finally:
        # the topology is shared: leave no schedule, calendar or periodic run behind for other tests
        for task_pk in started:

            def ended(pk: int = task_pk) -> bool:
                return topology.get(f"/tasks/{pk}/").json()["status"] in ("completed", "failed")

            wait_until(
                ended,
                timeout=30,
                interval=0.2,
                message="the run-now task ended",
            )
            topology.session.delete(
                f"{topology.gateway}/tasks/{task_pk}/", headers=topology.headers(), timeout=10
            )
        if calendar:
            topology.session.delete(
                f"{topology.gateway}/tasks/scheduled/calendars/{calendar['id']}/",
                headers=topology.headers(),
                timeout=10,
            )
        topology.session.delete(
            f"{topology.gateway}/tasks/scheduled/periodic-tasks/{schedule_id}/",
            headers=topology.headers(),
            timeout=10,
        )
