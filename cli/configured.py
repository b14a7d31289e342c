"""Option defaults from mreg's config file (``$XDG_CONFIG_HOME/mreg/config.toml``): an option's value is taken
from the command line, else its variable (``MREG_…``), else the file's table, else its default."""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from mreg.registry.config import config_path, read_config_file
from mreg.registry.errors import MregError


def configured(table: str, key: str, fallback: object = None) -> Callable[[], object]:
    """The default of an option: the config file's ``[table]`` value for ``key``, else ``fallback`` (read when
    the option is not given; a file that cannot be read, or a ``table`` that is not a table, is a usage error)."""

    def default() -> object:
        path = config_path(os.environ)
        try:
            values = read_config_file(path).get(table, {})
        except MregError as exc:
            raise click.UsageError(str(exc)) from None
        if not isinstance(values, dict):
            raise click.UsageError(f"{path}: [{table}] must be a table")
        return values.get(key, fallback)

    return default
