"""Which progress a pull shows (rich bars or plain lines), decided as rich decides, importing rich only where
its bars may be shown (issue #16: a pull to a pipe does not pay for importing rich)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHOICE = ("import sys; import mreg.cli.remote_commands, mreg.cli.ollama_commands; "
          "from mreg.cli.progress import pull_progress; "
          "print(type(pull_progress()).__name__, 'rich' in sys.modules)")


def _choice(stderr: int, **env: str) -> str:
    """What ``pull_progress`` picks in a fresh interpreter whose stderr is ``stderr``, and whether rich got imported."""
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    done = subprocess.run([sys.executable, "-c", CHOICE], env={**base, **env}, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=stderr, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_a_pipe_gets_plain_lines_without_importing_rich() -> None:
    assert _choice(subprocess.PIPE) == "PlainProgress False"


@pytest.mark.parametrize(("env", "expected"), [
    ({"FORCE_COLOR": "1"}, "RichProgress True"),
    ({"TTY_COMPATIBLE": "1"}, "RichProgress True"),
    ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, "PlainProgress True"),
    ({"FORCE_COLOR": ""}, "PlainProgress True"),
])
def test_the_variables_rich_reads_still_decide(env: dict[str, str], expected: str) -> None:
    assert _choice(subprocess.PIPE, **env) == expected


def test_a_terminal_gets_bars() -> None:
    controller, terminal = pty.openpty()
    try:
        assert _choice(terminal) == "RichProgress True"
    finally:
        os.close(terminal)
        os.close(controller)


def test_quiet_gets_plain_lines_even_on_a_terminal() -> None:
    from mreg.cli.progress import PlainProgress, pull_progress

    assert isinstance(pull_progress(quiet=True), PlainProgress)
