"""Run the test hub in the foreground (for benchmarks in another process).

    python -m tests.testhub --port 0 --cdn-port 0 [--repo-dir ORG/NAME=DIR]...
        [--big ORG/NAME:FILENAME=SIZE_BYTES]... [--throttle BYTES_PER_SEC] [--data-dir D]
        [--token TOKEN=USER]... [--no-builtin] [--no-xet] [--modelscope]

Prints one JSON line `{"endpoint": ..., "cdn": ...}` once serving, then runs until SIGTERM/SIGINT.
The MiniLM and SmolLM2 repos are served too unless --no-builtin. Big files are generated once in
--data-dir and reused by later runs. With --modelscope the same repos are served over ModelScope's
API (`TestModelScope`, LFS files redirected to its CDN host) instead of the Hub's.
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
import zlib
from pathlib import Path

from .content import generated_file
from .repos import HubRepo, minilm_repo, repo_from_dir, smollm_repo
from .modelscope import TestModelScope
from .server import TestHub


def _pair(text: str, sep: str) -> tuple[str, str]:
    left, found, right = text.partition(sep)
    if not found or not left or not right:
        raise argparse.ArgumentTypeError(f"expected LEFT{sep}RIGHT, got {text!r}")
    return left, right


def _big(text: str) -> tuple[str, str, int]:
    target, size = _pair(text, "=")
    repo_id, filename = _pair(target, ":")
    if not size.isdigit():
        raise argparse.ArgumentTypeError(f"size must be a number of bytes, got {size!r}")
    return repo_id, filename, int(size)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(prog="python -m tests.testhub", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cdn-host", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cdn-port", type=int, default=0)
    parser.add_argument("--repo-dir", type=lambda s: _pair(s, "="), action="append", default=[], metavar="ORG/NAME=DIR")
    parser.add_argument("--big", type=_big, action="append", default=[], metavar="ORG/NAME:FILENAME=SIZE")
    parser.add_argument("--token", type=lambda s: _pair(s, "="), action="append", default=[], metavar="TOKEN=USER")
    parser.add_argument("--throttle", type=int, default=None, metavar="BYTES_PER_SEC")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "mreg-testhub")
    parser.add_argument("--no-builtin", action="store_true", help="do not serve the MiniLM and SmolLM2 repos")
    parser.add_argument("--no-xet", action="store_true", help="send no xet headers or tree xetHash")
    parser.add_argument("--modelscope", action="store_true", help="speak ModelScope's API instead of the Hub's")
    return parser.parse_args(argv)


def build_hub(args: argparse.Namespace) -> TestHub | TestModelScope:
    """A TestHub or TestModelScope (not started) configured from the parsed command line."""
    hub: TestHub | TestModelScope
    if args.modelscope:
        hub = TestModelScope(dict(args.token), host=args.host, port=args.port, cdn_host=args.cdn_host,
                             cdn_port=args.cdn_port)
        hub.redirect_lfs = True
    else:
        hub = TestHub(dict(args.token), host=args.host, cdn_host=args.cdn_host, port=args.port,
                      cdn_port=args.cdn_port)
        hub.xet = not args.no_xet
    hub.faults.throttle = args.throttle
    if not args.no_builtin:
        hub.add_repo(minilm_repo())
        hub.add_repo(smollm_repo())
    for repo_id, directory in args.repo_dir:
        hub.add_repo(repo_from_dir(repo_id, directory))
    big: dict[str, dict[str, Path]] = {}
    for repo_id, filename, size in args.big:
        seed = zlib.crc32(f"{repo_id}:{filename}".encode())
        path = generated_file(args.data_dir / repo_id / filename, size, seed=seed)
        big.setdefault(repo_id, {})[filename] = path
    for repo_id, files in big.items():
        served = {r.repo_id: r for r in hub.repos.values() if r.repo_type == "model"}
        repo = served.get(repo_id) or hub.add_repo(HubRepo(repo_id))
        repo.commit(files, message="add big files")
    return hub


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    hub = build_hub(parse_args(argv))
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with hub:
        print(json.dumps({"endpoint": hub.endpoint, "cdn": hub.cdn_base}), flush=True)
        while not done.wait(3600):
            pass


if __name__ == "__main__":
    main()
