"""`make run` loads every service of the route table or refuses to start: a missing module or a
missing dependency is an error at start-up, never a platform quietly missing a part."""

import sys
from pathlib import Path

import pytest

import services
from shared.embedded import load_service


def test_a_service_whose_module_is_missing_fails_loudly() -> None:
    with pytest.raises(ModuleNotFoundError, match="services.billing"):
        load_service("billing")


def test_a_service_whose_dependency_is_missing_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a service package that exists, whose app imports a library that is not installed
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "__init__.py").write_text("")
    (tmp_path / "billing" / "app.py").write_text("import a_dependency_not_installed\n")
    monkeypatch.setattr(services, "__path__", [*services.__path__, str(tmp_path)])
    try:
        with pytest.raises(ModuleNotFoundError, match="a_dependency_not_installed"):
            load_service("billing")
    finally:  # the half-imported package leaves with the test
        sys.modules.pop("services.billing", None)
        sys.modules.pop("services.billing.app", None)
        vars(services).pop("billing", None)
