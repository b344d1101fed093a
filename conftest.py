import pytest

pytest_plugins = ["shared.testing.fixtures", "shared.testing.event_contract"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the shared broker run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("broker_outage") is not None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from shared.testing.fixtures import flush_broker_prefixes

    flush_broker_prefixes()
