"""A click group whose commands are imported only when one is run (or its own help is asked for).

Each command names its module and a one-line summary; ``mreg --help`` lists the summaries, so that
neither it nor ``mreg --version`` imports any command, and ``mreg path`` imports only ``path``'s module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from mreg.registry.imports import import_for_good


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (``module:attribute``) and its summary in the group's help."""

    target: str
    summary: str
    """The command's short help, as click derives it from its docstring (a test keeps the two equal)."""

    def short_help(self, limit: int) -> str:
        """The summary cut to ``limit`` characters as click cuts a command's help (a bare command does it)."""
        return click.Command(None, help=self.summary).get_short_help_str(limit)

    def load(self) -> click.Command:
        """Import the command for good (``registry.imports``: ~54,000 objects for ``pull``, aiohttp and the
        rest). TLS contexts made meanwhile (aiohttp's two) load the CA certificates when first used
        (``deferred_cas``).
        """
        from mreg.cli.deferred_cas import cas_on_first_use  # brings ssl, which --help and --version do without

        module, _, attribute = self.target.partition(":")
        with cas_on_first_use():
            command = getattr(import_for_good(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(click.Group):
    """A ``click.Group`` over ``lazy``: name → LazyCommand, loaded on first use."""

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section click writes, from the summaries instead of the loaded commands."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, self.lazy[name].short_help(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
