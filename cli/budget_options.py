"""The size budget's options, shared by `mreg gc` (one round, now) and `mreg serve` (rounds in the background).

A command with ``@budget_options`` takes ``max_size, high, low, min_free, order, evict_after`` and builds the
budget with ``Budget.parse`` (inside its error handling, so a bad size is one line, exit 2). Each option is
taken from the command line, else its variable (``MREG_MAX_SIZE``…), else the config file's ``[budget]``
table (``max_size``, ``high``, ``low``, ``min_free``, ``evict``, ``evict_after``), else its default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from mreg.registry.eviction.policy import ORDERS

from mreg.cli.configured import configured

F = TypeVar("F", bound=Callable[..., object])


def _configured(key: str, fallback: object = None) -> Callable[[], object]:
    """The default of an option: the config file's ``[budget]`` value for ``key``, else ``fallback``."""
    return configured("budget", key, fallback)


_OPTIONS = (
    click.option("--max-size", envvar="MREG_MAX_SIZE", show_envvar=True, metavar="SIZE",
                 default=_configured("max_size"),
                 help="Size budget (500G, 300MB): past --high % of it, evict whole revisions down to --low %."),
    click.option("--high", type=click.FloatRange(0, 100, min_open=True), default=_configured("high", 95.0),
                 show_default="95.0",
                 help="High watermark, in % of --max-size."),
    click.option("--low", type=click.FloatRange(0, 100, min_open=True), default=_configured("low", 85.0),
                 show_default="85.0",
                 help="Low watermark, in % of --max-size."),
    click.option("--min-free", envvar="MREG_MIN_FREE", show_envvar=True, metavar="SIZE",
                 default=_configured("min_free"),
                 help="Also evict while the store's disk has less free space than this."),
    click.option("--evict", "order", type=click.Choice(ORDERS), default=_configured("evict", "lru"),
                 show_default="lru", envvar="MREG_EVICT", show_envvar=True,
                 help="What goes first: least recently used, largest, or (age) whatever is unused for --evict-after."),
    click.option("--evict-after", default=_configured("evict_after", "30d"), show_default="30d", metavar="AGE",
                 help="With --evict age: evict revisions unused this long (12h, 30d)."),
)


def budget_options(command: F) -> F:
    """Add the budget options to ``command``."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command
