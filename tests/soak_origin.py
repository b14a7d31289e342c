"""The fault soak's origin: a test hub serving a few generated repos that get new content every round, and the
faults armed for each round (cut bodies, 503s, 429s with Retry-After, stalls, and one corrupt transfer)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tests.testhub import TestHub, generated_file
from tests.testhub.content import Blob
from tests.testhub.repos import HubRepo

REPOS = tuple(f"soak/model-{i}" for i in range(4))
SHARED = "shared.bin"
"""A file whose content is the same in the first two repos each round (one blob, two repos' fetches)."""
SIZES = {"weights-a.bin": 2_500_000, "weights-b.bin": 1_000_000, SHARED: 600_000}
"""LFS files (served by the CDN) and their sizes; each repo also has a config.json served by the hub itself."""


@dataclass(frozen=True)
class Want:
    """One file a client asks for: a repo, a revision (a commit, or ``main``) and a path."""

    repo: str
    revision: str
    path: str


class SoakOrigin:
    """The hub and its repos; ``publish`` commits new content to every repo for the next round."""

    def __init__(self, hub: TestHub, data: Path, seed: int = 0) -> None:
        self.hub, self._data, self._random = hub, data, random.Random(seed)
        self.round = -1
        for repo_id in REPOS:
            hub.add_repo(HubRepo(repo_id, owner="soak"))

    def publish(self) -> None:
        """A new commit in every repo: every file gets new content (the shared file the same in two repos)."""
        self.round += 1
        shared = self._file(SHARED, self.round * 1000)
        for index, repo_id in enumerate(REPOS):
            files: dict[str, Blob | str] = {
                path: self._file(path, self.round * 1000 + index * 10 + n) for n, path in enumerate(SIZES)}
            if index < 2:
                files[SHARED] = shared
            files["config.json"] = f'{{"model_type": "soak", "round": {self.round}, "pad": "{"x" * 2000}"}}\n'
            self.hub.repo(repo_id).commit(files, message=f"round {self.round}")

    def _file(self, path: str, seed: int) -> Blob:
        name = f"{seed}-{path}"
        return Blob.from_file(generated_file(self._data / name, SIZES[path], seed=seed))

    def head(self, repo_id: str) -> str:
        """The commit ``main`` points to."""
        return self.hub.repo(repo_id).head.sha

    def blob(self, repo_id: str, commit: str, path: str) -> Blob | None:
        """The content of ``path`` at ``commit`` (None: no such commit or file)."""
        found = self.hub.repo(repo_id).commits.get(commit)
        entry = found.files.get(path) if found is not None else None
        return entry.blob if entry is not None else None

    def wants(self, rng: random.Random, n: int) -> list[Want]:
        """``n`` random files of this round's commits."""
        paths = [*SIZES, "config.json"]
        chosen = []
        for _ in range(n):
            repo_id = rng.choice(REPOS)
            chosen.append(Want(repo_id, self.head(repo_id), rng.choice(paths)))
        return chosen

    def arm(self, rng: random.Random) -> frozenset[str]:
        """Arm this round's faults, each firing on the next matching requests; round 0 also corrupts one
        transfer of an LFS file of its own, round 1 one of a file the hub serves itself. Returns the sha256s
        of the contents corrupted."""
        faults = self.hub.faults
        faults.cut_body(rng.randrange(10_000, 400_000), count=4, route="cdn")
        faults.cut_body(rng.randrange(100, 1500), count=1, route="resolve")
        faults.fail(503, count=3, route="cdn")
        faults.fail(503, count=2, route="api")
        faults.fail(429, count=2, route="cdn", retry_after=1)
        faults.fail(429, count=1, route="api", retry_after=1)
        faults.stall(rng.randrange(1, 200_000), seconds=1.5, count=2, route="cdn")
        faults.drop("/paths-info/", count=1, route="api")
        faults.drop("/revision/", count=1, route="api")
        if self.round > 1:
            return frozenset()
        repo, path, route = (REPOS[0], "weights-a.bin", "cdn") if self.round == 0 else (REPOS[1], "config.json", "resolve")
        target = self.hub.repo(repo).head.files[path].blob.sha256
        faults.corrupt(target, count=1, route=route)
        return frozenset({target})
