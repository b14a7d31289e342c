"""The one exception tree of mreg.

    MregError                      every error mreg reports; ``str(err)`` is one line for users
    ├── UsageError                 the caller asked for something malformed (bad repo id, bad glob)
    ├── UpstreamError              the hub said no, or could not be reached
    │   ├── RepoNotFoundError
    │   ├── RevisionNotFoundError
    │   ├── EntryNotFoundError
    │   ├── GatedRepoError
    │   └── UpstreamUnavailableError   connection failures, 5xx and 429 after every retry
    ├── IntegrityError             bytes that do not match their announced hash or size
    ├── UnsafePathError            a file name that would escape its folder
    ├── FormatError                a model file whose header is malformed (safetensors, GGUF)
    ├── StoreError                 the local store (disk full, permissions, missing snapshot)
    └── CatalogError               the catalog database

Lower-layer exceptions (aiohttp, OSError, SQLAlchemy) are translated into these at one boundary
each: the Hub client, the store and the catalog.
"""

from __future__ import annotations


class MregError(Exception):
    """Base of every error mreg reports; the message is a single line meant for users."""

    exit_code = 1


class UsageError(MregError):
    exit_code = 2


class UpstreamError(MregError):
    exit_code = 3


class RepoNotFoundError(UpstreamError):
    pass


class RevisionNotFoundError(UpstreamError):
    pass


class EntryNotFoundError(UpstreamError):
    pass


class GatedRepoError(UpstreamError):
    pass


class UpstreamUnavailableError(UpstreamError):
    pass


class IntegrityError(MregError):
    exit_code = 4


class UnsafePathError(MregError):
    exit_code = 4


class FormatError(MregError):
    exit_code = 4


class StoreError(MregError):
    exit_code = 5


class CatalogError(MregError):
    exit_code = 5


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The most telling error inside a failed task group: an MregError if there is one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return next((e for e in leaves if isinstance(e, MregError)), leaves[0])
