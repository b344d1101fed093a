import pytest

pytest_plugins = ["shared.testing.fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the shared broker run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("broker_outage") is not None)
