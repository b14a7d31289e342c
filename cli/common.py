"""What every ``mreg`` command shares: running async commands with one-line errors, JSON output,
common options. Its own module so that command modules other than ``cli.main`` can use it."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from mreg.registry.errors import MregError
from mreg.registry.repo import REPO_TYPES

T = TypeVar("T")
EXIT_INTERRUPTED = 130


def _run(coro_fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async command, turning mreg's errors into one line on stderr and an exit code."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(coro_fn(*args, **kwargs))
        except MregError as exc:
            click.echo(f"mreg: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("mreg: interrupted (run the same command again to resume)", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


repo_type_option = click.option("--repo-type", type=click.Choice(REPO_TYPES), default="model", show_default=True,
                                help="Kind of repository.")
revision_option = click.option("--revision", default="main", show_default=True, help="Branch, tag or commit.")
include_option = click.option("--include", multiple=True, metavar="GLOB", help="Only files matching GLOB (repeatable).")
exclude_option = click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching GLOB (repeatable).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
