"""The ``mreg`` command. Its commands live in their own modules, imported only when one runs (see
``cli.lazy``): ``mreg --version`` and ``--help`` load no command, ``mreg path`` neither the catalog's
database layer nor HTTP, ``mreg ls`` no HTTP, nothing of the daemon and, on the embedded catalog, not SQLAlchemy either."""

from __future__ import annotations

import os

import click

from mreg.registry import __version__
from mreg.registry.config import DATABASE_URL_VARIABLE

from mreg.cli.lazy import LazyCommand, LazyGroup

COMMANDS = {
    "convert": LazyCommand("mreg.cli.convert_command:convert_command",
                           "Convert REPO_ID's safetensors to a GGUF as llama.cpp would (pulling what is missing); "
                           "keep it in the store and print its path last."),
    "gc": LazyCommand("mreg.cli.local_commands:gc_command",
                      "Delete blobs no repo uses and stale partial downloads; with a budget, evict revisions too."),
    "inspect": LazyCommand("mreg.cli.remote_commands:inspect_command",
                           "Show what a repo's weights hold (read remotely from their headers; no weights downloaded)."),
    "ls": LazyCommand("mreg.cli.ls_command:ls_command", "List the repos in the local store."),
    "mirror": LazyCommand("mreg.cli.mirror_commands:mirror_command",
                          "Keep repos mirrored by the daemon (`mreg serve`), once or on a schedule."),
    "modelfile": LazyCommand("mreg.cli.ollama_commands:modelfile_command",
                             "Pull REPO_ID's GGUF and write a Modelfile for `ollama create` (FROM the local file)."),
    "ollama": LazyCommand("mreg.cli.ollama_commands:ollama_command",
                          "Make REPO_ID's GGUF an Ollama model: `ollama create` when ollama is installed, else (or "
                          "with --direct) written straight into Ollama's store."),
    "path": LazyCommand("mreg.cli.path_command:path_command", "Print the snapshot folder of a local repo."),
    "pin": LazyCommand("mreg.cli.local_commands:pin_command",
                       "Keep a repo (or one revision) from eviction; without REPO, list the pins."),
    "pull": LazyCommand("mreg.cli.remote_commands:pull_command",
                        "Download REPO_ID at a revision into the store; print the snapshot folder last."),
    "rm": LazyCommand("mreg.cli.local_commands:rm_command",
                      "Remove a repo (all its revisions) and free the space nothing else uses."),
    "search": LazyCommand("mreg.cli.local_commands:search_command",
                          "Search the local catalog (repos pulled or inspected before)."),
    "serve": LazyCommand("mreg.cli.serve_command:serve_command",
                         "Serve the store as a Hugging Face Hub mirror that pulls missing files through (until "
                         "SIGTERM), and run the mirror jobs (``mreg mirror``)."),
    "unpin": LazyCommand("mreg.cli.local_commands:unpin_command", "Let eviction remove a pinned repo (or revision) again."),
    "verify": LazyCommand("mreg.cli.verify_command:verify_command",
                          "Re-hash a local repo's files against upstream's hashes; exit 4 on any mismatch (with "
                          "--repair: on any file it could not fetch again)."),
}


def _use_database_url(ctx: click.Context, _param: click.Parameter, url: str | None) -> None:
    """``--database-url``: the commands read the catalog's URL from the environment (``Settings``), so
    set it there for this invocation (restored when it ends, for in-process callers)."""
    if not url:
        return
    before = os.environ.get(DATABASE_URL_VARIABLE)
    os.environ[DATABASE_URL_VARIABLE] = url

    def restore() -> None:
        if before is None:
            os.environ.pop(DATABASE_URL_VARIABLE, None)
        else:
            os.environ[DATABASE_URL_VARIABLE] = before

    ctx.call_on_close(restore)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mreg")
@click.option("--database-url", metavar="URL", expose_value=False, is_eager=True, callback=_use_database_url,
              help="The catalog's database for this command: sqlite+aiosqlite:///PATH or "
              "postgresql+asyncpg://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: MREG_DATABASE_URL, else "
              "catalog.db in MREG_HOME).")
def main() -> None:
    """mreg: pull, verify and serve Hugging Face models from one content-addressed store."""


if __name__ == "__main__":
    main()
