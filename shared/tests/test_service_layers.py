"""The layering of every service (docs/service-layout.md), read from the source: only the HTTP
layer knows Flask and HTTP. Service layers, event handlers, read models, the scheduler's firing
and the domain rules they call raise shared.domain_errors and are given plain values (a
Principal, a Caller), never the request; schemas serialize without reading the request either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"

# the HTTP layer and its wiring (the app factory, the container's `<name>()` accessor): Flask and HTTP errors allowed
HTTP_LAYER = {"resources.py", "app.py", "wsgi.py", "container.py"}
# serialization: our flask-smorest layer (shared.api) but never the request
SCHEMAS = {"schemas.py", "run_views.py"}

WEB = ("flask", "flask_smorest", "werkzeug")
HTTP_ERRORS = ("shared.errors",)
SERIALIZATION = ("shared.api",)
# shared.auth's helpers that read the current request (its Principal is a plain value)
REQUEST_HELPERS = {"current_principal", "authorize", "machine_target", "machine_assertion"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every import, at any depth (lazy ones too), with relative
    imports resolved against the file's package."""
    package = _module_name(path).rsplit(".", 1)[0]
    if path.name == "__init__.py":
        package = _module_name(path).removesuffix(".__init__")
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.extend((node.lineno, base, alias.name) for alias in node.names)
            found.append((node.lineno, base, None))
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def violations(path: Path) -> list[str]:
    if path.name in HTTP_LAYER:
        return []
    forbidden = WEB if path.name in SCHEMAS else WEB + HTTP_ERRORS + SERIALIZATION
    where = path.relative_to(ROOT)
    out = []
    for line, module, name in _imports(path):
        if name is None and _within(module, forbidden):
            out.append(f"{where}:{line} imports {module}")
        elif module == "shared" and name is not None and _within(f"shared.{name}", forbidden):
            out.append(f"{where}:{line} imports shared.{name}")
        elif module == "shared.auth" and name in REQUEST_HELPERS:
            out.append(f"{where}:{line} imports shared.auth.{name} (it reads the request)")
    return out


def _modules() -> list[Path]:
    return sorted(
        p for p in SERVICES.rglob("*.py") if not {"tests", "migrations"} & set(p.relative_to(SERVICES).parts)
    )


def test_the_scan_sees_the_service_layers():
    names = {str(p.relative_to(SERVICES)) for p in _modules()}
    for expected in (
        "core/tasks/service.py",
        "core/execution.py",
        "core/read_model.py",
        "monitoring/handlers.py",
        "persistence/jobs/service.py",
        "scheduling/firing.py",
        "scheduling/periodic_tasks/service.py",
    ):
        assert expected in names


def test_only_the_http_layer_knows_flask_and_http_errors():
    found = [v for path in _modules() for v in violations(path)]
    assert not found, "non-HTTP modules importing the web layer:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("name", "source", "caught"),
    [
        ("service.py", "from flask import g\n", "imports flask"),
        ("service.py", "def f():\n    from werkzeug.exceptions import NotFound\n", "imports werkzeug"),
        ("read_model.py", "from shared.errors import ApiError\n", "imports shared.errors"),
        ("handlers.py", "from shared import errors\n", "imports shared.errors"),
        ("service.py", "from shared.auth import Principal, current_principal\n", "current_principal"),
        ("execution.py", "import flask_smorest\n", "imports flask_smorest"),
        ("schemas.py", "from flask import g\n", "imports flask"),
    ],
)
def test_the_scan_catches(tmp_path, monkeypatch, name, source, caught):
    """The rule can fail: each forbidden import, planted in a module, is reported."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    module = tmp_path / "services" / "demo" / name
    module.parent.mkdir(parents=True)
    module.write_text(source)
    assert any(caught in v for v in violations(module))


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("service.py", "from shared.domain_errors import NotFound\nfrom shared.auth import Principal\n"),
        ("schemas.py", "from shared.api import ReadSchema\n"),
        ("resources.py", "from flask import request\nfrom shared.errors import ApiError\n"),
    ],
)
def test_the_scan_lets_through(tmp_path, monkeypatch, name, source):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    module = tmp_path / "services" / "demo" / name
    module.parent.mkdir(parents=True)
    module.write_text(source)
    assert violations(module) == []
