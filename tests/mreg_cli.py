"""Running `mreg` in process (click's runner); pair it with the `mreg_env` fixture of tests/mreg_env.py."""

from __future__ import annotations

from click.testing import CliRunner

from mreg.cli.main import main


def mreg(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process run."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
