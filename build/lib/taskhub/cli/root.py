"""The root group: settings, the client, output (a rich table or JSON) and the error rule."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from ..client import Client
from ..errors import ApiError
from ..settings import SettingsError, resolve

EXIT_API_ERROR = 1
EXIT_TASK_FAILED = 3
EXIT_TASK_CANCELLED = 4
EXIT_WAIT_TIMEOUT = 5

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Invocation:
    """What every command gets: how to reach the platform and how to print."""

    url: str | None
    token: str | None
    brand: int | None
    profile: str | None
    output: str

    @property
    def as_json(self) -> bool:
        return self.output == "json"

    def client(self) -> Client:
        try:
            settings = resolve(self.url, self.token, self.brand, self.profile)
        except SettingsError as error:
            fail(str(error))
        if not settings.token:
            fail("no token: pass --token, set TASKHUB_TOKEN or put one in the config file (`taskhub token`)")
        if settings.brand is None:
            fail("no brand: pass --brand, set TASKHUB_BRAND or put one in the config file")
        return Client(settings.url, settings.token, settings.brand)

    def show(
        self,
        data: Any,
        columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] | None = None,
        title: str | None = None,
    ) -> None:
        """JSON as the API gave it, or a table of `columns` (header, getter) for a list, or a
        two-column table for one object."""
        if self.as_json:
            out.print_json(json.dumps(data, default=str))
            return
        if columns is not None:
            table = Table(title=title, header_style="bold", show_lines=False)
            for header, _ in columns:
                table.add_column(header)
            for row in data:
                table.add_row(*(_cell(getter(row)) for _, getter in columns))
            out.print(table)
            return
        table = Table(title=title, show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        for key, value in data.items():
            table.add_row(key, _cell(value))
        out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def fail(message: str, code: int = EXIT_API_ERROR) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", markup=True)
    sys.exit(code)


class ApiErrorsExit(click.Group):
    """Any API error of any command: its `detail` (and field errors) on stderr, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as error:
            lines = [f"{error.detail} ({error.status} {error.error_code})"]
            lines += [f"  {name}: {', '.join(map(str, msgs))}" for name, msgs in error._fields()]
            err.print("[red]error:[/red] " + "\n".join(lines), markup=True)
            sys.exit(EXIT_API_ERROR)


@click.group(cls=ApiErrorsExit, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", help="the platform's base URL [env TASKHUB_URL; default http://localhost:8080]")
@click.option("--token", help="a JWT [env TASKHUB_TOKEN]")
@click.option("--brand", type=int, help="the brand to act in [env TASKHUB_BRAND]")
@click.option("--profile", help="a [profiles.NAME] of the config file [env TASKHUB_PROFILE]")
@click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True,
    help="json: the API's JSON, for scripts",
)  # fmt: skip
@click.version_option(package_name="taskhub", message="taskhub %(version)s")
@click.pass_context
def root(
    ctx: click.Context,
    url: str | None,
    token: str | None,
    brand: int | None,
    profile: str | None,
    output: str,
) -> None:
    """Operate a taskhub platform: tasks, workers, queues, schedules, persistent jobs, events.

    Settings: flags, then TASKHUB_URL / TASKHUB_TOKEN / TASKHUB_BRAND, then the config file
    (TASKHUB_CONFIG, default ~/.config/taskhub/config.toml)."""
    ctx.obj = Invocation(url, token, brand, profile, output)


def main() -> None:
    root(prog_name="taskhub")
