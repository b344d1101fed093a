"""The client's and the command's own rules, no server needed: where settings come from, which
exception an error answer becomes, development tokens, and the command's usage errors."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

from taskhub import errors
from taskhub.cli import root
from taskhub.dev_token import mint
from taskhub.settings import SettingsError, resolve


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TASKHUB_URL", "TASKHUB_TOKEN", "TASKHUB_BRAND", "TASKHUB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("TASKHUB_CONFIG", str(path))
    return path


def test_flags_beat_the_environment_which_beats_the_file(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text('url = "http://file:1"\ntoken = "file-token"\nbrand = 3\n')
    assert (resolve().url, resolve().token, resolve().brand) == ("http://file:1", "file-token", 3)
    monkeypatch.setenv("TASKHUB_URL", "http://env:2/")
    monkeypatch.setenv("TASKHUB_BRAND", "4")
    assert (resolve().url, resolve().token, resolve().brand) == ("http://env:2", "file-token", 4)
    flags = resolve(url="http://flag:3", token="flag-token", brand=5)
    assert (flags.url, flags.token, flags.brand) == ("http://flag:3", "flag-token", 5)


def test_profiles_and_token_files(config: Path, tmp_path: Path) -> None:
    secret = tmp_path / "prod.jwt"
    secret.write_text("prod-token\n")
    config.write_text(
        'url = "http://dev:1"\nbrand = 9\n'
        f'[profiles.prod]\nurl = "https://prod.example"\ntoken_file = "{secret}"\n'
    )
    prod = resolve(profile="prod")
    assert (prod.url, prod.token, prod.brand) == ("https://prod.example", "prod-token", 9)
    with pytest.raises(SettingsError, match="no \\[profiles.staging\\]"):
        resolve(profile="staging")


def test_without_any_setting_the_default_url_and_no_token(config: Path) -> None:
    settings = resolve()
    assert (settings.url, settings.token, settings.brand) == ("http://localhost:8080", None, None)


def test_a_brand_that_is_not_a_number_is_refused(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKHUB_BRAND", "humari")
    with pytest.raises(SettingsError, match="integer"):
        resolve()


@pytest.mark.parametrize(
    ("status", "code", "expected", "family"),
    [
        (404, "TASK_NOT_FOUND", errors.TaskNotFound, errors.NotFound),
        (409, "MAX_RETRIES_EXCEEDED", errors.MaxRetriesExceeded, errors.Conflict),
        (400, "VALIDATION_ERROR", errors.ValidationError, errors.BadRequest),
        (401, "TOKEN_EXPIRED", errors.TokenExpired, errors.Unauthorized),
        (403, "BRAND_ACCESS_DENIED", errors.BrandAccessDenied, errors.Forbidden),
        (422, "IDEMPOTENCY_KEY_REUSED", errors.IdempotencyKeyReused, errors.Unprocessable),
        (503, "SERVICE_UNAVAILABLE", errors.ServiceUnavailable, errors.ServerError),
        (409, "SOMETHING_NEW", errors.Conflict, errors.ApiError),  # a code this client does not know
    ],
)
def test_each_error_code_has_its_class(status: int, code: str, expected: type, family: type) -> None:
    error = errors.error_from_response(
        status, {"detail": "why", "error_code": code, "field_errors": {"a": ["b"]}}
    )
    assert type(error) is expected and isinstance(error, family)
    assert (error.status, error.error_code, error.detail, error.field_errors) == (
        status,
        code,
        "why",
        {"a": ["b"]},
    )


def test_every_error_code_of_the_contract_has_a_class() -> None:
    contract = {
        "TASK_NOT_FOUND", "INVALID_STATUS_TRANSITION", "MAX_RETRIES_EXCEEDED", "TASK_ALREADY_COMPLETED",
        "UNKNOWN_TASK_TYPE", "METRIC_FIELD_INVALID", "THRESHOLD_OUT_OF_RANGE", "ALERT_COOLDOWN_ACTIVE",
        "JOB_NOT_RESUMABLE", "CHECKPOINT_CORRUPTED", "INVALID_JOB_STATE", "INVALID_CRON_EXPRESSION",
        "SCHEDULE_IN_PAST", "FREQUENCY_NOT_SUPPORTED", "TIMEZONE_INVALID", "NOT_FOUND", "RATE_LIMITED",
        "SERVICE_UNAVAILABLE", "IDEMPOTENCY_KEY_REUSED", "AUTHENTICATION_FAILED", "TOKEN_EXPIRED",
        "BRAND_REQUIRED", "BRAND_ACCESS_DENIED", "PERMISSION_DENIED", "VALIDATION_ERROR",
    }  # fmt: skip
    assert contract <= set(errors.ERRORS_BY_CODE)


def test_an_answer_that_is_not_the_error_shape_is_a_transport_error() -> None:
    error = errors.error_from_response(502, "<html>bad gateway</html>")
    assert isinstance(error, errors.TransportError) and error.status == 502


def test_development_tokens_carry_the_platforms_claims() -> None:
    token = mint("s" * 40, [9, 12], role="operator", username="ana", hours=1)
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"])
    assert claims["username"] == "ana"
    assert [(b["id"], b["role"]) for b in claims["brands"]] == [(9, "operator"), (12, "operator")]
    assert claims["exp"] - claims["iat"] == 3600


def test_the_command_explains_a_missing_token(config: Path) -> None:
    result = CliRunner().invoke(root, ["--brand", "9", "tasks", "list"])
    assert result.exit_code == 1
    assert "no token" in result.stderr


def test_the_command_refuses_a_context_that_is_not_an_object(config: Path) -> None:
    result = CliRunner().invoke(root, ["--brand", "9", "--token", "t", "tasks", "submit", "x", "-c", "[1]"])
    assert result.exit_code == 2
    assert "must be a JSON object" in result.stderr


def test_token_mints_with_a_given_secret(config: Path) -> None:
    result = CliRunner().invoke(root, ["token", "--secret", "k" * 40, "--role", "viewer", "-b", "3"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.stdout.strip(), "k" * 40, algorithms=["HS256"])
    assert claims["brands"][0] == {"id": 3, "name": "Humari", "role": "viewer"}
