"""The one exception tree of mreg, and what each error is on every surface.

    class                          exit  HTTP  code                 meaning
    MregError                         1  500   InternalError        every error mreg reports; ``str(err)`` is one line
    ├── UsageError                    2  400   BadRequest           the caller asked for something malformed
    │   ├── RangeNotSatisfiableError  2  416   RangeNotSatisfiable  a Range header names no byte of the file
    │   └── MethodNotAllowedError     2  405   MethodNotAllowed     a route asked with a method it does not take
    ├── UpstreamError                 3  502   UpstreamError        the hub said no, or answered oddly
    │   ├── RepoNotFoundError         3  404   RepoNotFound
    │   ├── RevisionNotFoundError     3  404   RevisionNotFound
    │   ├── EntryNotFoundError        3  404   EntryNotFound
    │   │   └── QuantNotFoundError    3  404   EntryNotFound        no file of the quant asked for
    │   │       └── NoGGUFError       3  404   EntryNotFound        no GGUF in the repo nor in one quantized from it
    │   ├── GatedRepoError            3  403   GatedRepo            (401 when the caller must log in first)
    │   ├── UpstreamRefusedError      3  4xx   (upstream's)         a 4xx answer the daemon passes on unchanged
    │   ├── LocationExpiredError      3  502   UpstreamError        a signed CDN URL was refused: locate again
    │   ├── TransferFailedError       3  502   UpstreamError        a shared download failed under its readers
    │   └── UpstreamUnavailableError  3  504   UpstreamUnavailable  connection failures, 5xx and 429 after retries
    ├── IntegrityError                4  502   IntegrityError       bytes that do not match their hash or size
    ├── UnsafePathError               4  502   UnsafePath           a file name that would escape its folder
    ├── FormatError                   4  422   FormatError          a model file that mreg cannot read or write
    ├── StoreError                    5  500   StoreError           the blob store (disk full, permissions, S3 refusals…)
    │   ├── StoreUnavailableError     5  503   StoreUnavailable     an object store that cannot be reached or fails (5xx)
    │   ├── BlobDeletedError          5  503   StoreUnavailable     a blob an eviction round is deleting: fetched again
    │   └── StoreUnsupportedError     5  501   NotSupported         what this kind of store cannot do (yet)
    └── CatalogError                  5  500   CatalogError         the catalog database

Every error carries its row: ``exit_code`` (the CLI's exit status), ``http_status`` and ``code`` (what
the daemon answers when it raises one before a body is sent). Each surface renders them its own way
from these three and the message: the CLI (``cli.common``), the Hub routes (``daemon.hub.answers``),
the ModelScope routes, the catalog API and its pages. ``tests/test_error_shapes.py`` checks this
table against the classes and pins each surface's answer.

Lower-layer exceptions (aiohttp, OSError, botocore, SQLAlchemy) are translated into these at one
boundary each: the upstream clients, the stores and the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mreg.registry.repo import RepoRef


class MregError(Exception):
    """Base of every error mreg reports; the message is a single line meant for users."""

    exit_code = 1
    http_status: int = 500
    code: str = "InternalError"


class UsageError(MregError):
    exit_code = 2
    http_status = 400
    code = "BadRequest"


class RangeNotSatisfiableError(UsageError):
    http_status = 416
    code = "RangeNotSatisfiable"


class MethodNotAllowedError(UsageError):
    """``allowed``: the methods the route takes (its answer's ``Allow`` header)."""

    http_status = 405
    code = "MethodNotAllowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class UpstreamError(MregError):
    exit_code = 3
    http_status = 502
    code = "UpstreamError"


class RepoNotFoundError(UpstreamError):
    http_status = 404
    code = "RepoNotFound"


class RevisionNotFoundError(UpstreamError):
    http_status = 404
    code = "RevisionNotFound"


class EntryNotFoundError(UpstreamError):
    http_status = 404
    code = "EntryNotFound"


class QuantNotFoundError(EntryNotFoundError):
    """The quant asked for is in none of the files looked at (the message says what there is)."""


class NoGGUFError(QuantNotFoundError):
    """Neither the repo nor any repo quantized from it has a GGUF file."""

    def __init__(self, repo: RepoRef, message: str) -> None:
        super().__init__(message)
        self.repo = repo


class GatedRepoError(UpstreamError):
    """A gated repo: 401 for a caller who must log in first, 403 for one not granted access."""

    http_status = 403
    code = "GatedRepo"

    def __init__(self, message: str, http_status: int = 403) -> None:
        super().__init__(message)
        self.http_status = http_status


class UpstreamRefusedError(UpstreamError):
    """Upstream refused (4xx) a request the daemon made for a client: its answer, to pass on unchanged."""

    code = "UpstreamRefused"

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        super().__init__(headers.get("X-Error-Message") or f"upstream refused the request (HTTP {status})")
        self.http_status = status
        self.code = headers.get("X-Error-Code") or type(self).code
        self.headers = dict(headers)
        self.body = body


class LocationExpiredError(UpstreamError):
    """A signed CDN URL was refused (expired or revoked): locate the file again."""


class TransferFailedError(UpstreamError):
    """A shared download failed or did not verify: its readers must cut their clients off."""


class UpstreamUnavailableError(UpstreamError):
    http_status = 504
    code = "UpstreamUnavailable"


class IntegrityError(MregError):
    exit_code = 4
    http_status = 502
    code = "IntegrityError"


class UnsafePathError(MregError):
    exit_code = 4
    http_status = 502
    code = "UnsafePath"


class FormatError(MregError):
    exit_code = 4
    http_status = 422
    code = "FormatError"


class StoreError(MregError):
    exit_code = 5
    code = "StoreError"


class StoreUnavailableError(StoreError):
    """The object store could not be reached, timed out or failed (5xx): worth retrying later."""

    http_status = 503
    code = "StoreUnavailable"


class BlobDeletedError(StoreError):
    """A blob an eviction round on a shared store began deleting (or deleted) was about to be recorded for a file:
    the file is fetched again, or the request is worth retrying."""

    http_status = 503
    code = "StoreUnavailable"

    def __init__(self, message: str, deleted: bool = False) -> None:
        super().__init__(message)
        self.deleted = deleted


class StoreUnsupportedError(StoreError):
    """Something that needs blobs as local files, asked of a store that keeps them elsewhere (S3)."""

    http_status = 501
    code = "NotSupported"


class CatalogError(MregError):
    exit_code = 5
    code = "CatalogError"


def failure_reason(exc: BaseException) -> str:
    """What a failure is recorded and reported as: an MregError's own one-line message, else the exception's
    type and message."""
    return str(exc) if isinstance(exc, MregError) else f"{type(exc).__name__}: {exc}"


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
