"""The one boundary where botocore and aiohttp failures of an ``S3BlobStore`` become mreg errors.

Messages name the operation, the S3 error code and the HTTP status, never a credential.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError,
                                 NoCredentialsError, PartialCredentialsError, ResponseStreamingError)

from mreg.registry.errors import StoreError, StoreUnavailableError

REFUSED_CODES = frozenset({"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
                           "InvalidToken", "403"})
BUSY_CODES = frozenset({"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError"})


def status_of(exc: ClientError) -> int:
    """The HTTP status of the answer behind ``exc`` (0 if unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def code_of(exc: ClientError) -> str:
    """The S3 error code behind ``exc`` (the status as text when the answer had no body, as for HEAD)."""
    return str(exc.response.get("Error", {}).get("Code") or status_of(exc))


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines too) collapsed into single spaces."""
    return " ".join(str(text).split())


def translate(exc: BaseException, what: str) -> StoreError:
    """The mreg error for ``exc``, raised while trying ``what`` (e.g. "to read blob 12ab… in s3://b/p")."""
    if isinstance(exc, ClientError):
        status, code = status_of(exc), code_of(exc)
        if code in REFUSED_CODES or status == 403:
            return StoreError(f"the S3 store refused {what}: {code} (HTTP {status}; check the AWS credentials)")
        if code == "NoSuchBucket":
            return StoreError(f"the S3 store refused {what}: NoSuchBucket (the bucket does not exist)")
        if status >= 500 or code in BUSY_CODES:
            return StoreUnavailableError(f"the S3 store failed {what}: {code} (HTTP {status})")
        return StoreError(f"the S3 store refused {what}: {code} (HTTP {status})")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreError(f"no AWS credentials for {what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          "(or AWS_PROFILE)")
    if isinstance(exc, (BotoConnectionError, ResponseStreamingError, aiohttp.ClientError, asyncio.TimeoutError)):
        return StoreUnavailableError(f"cannot reach the S3 store {what}: {one_line(exc) or type(exc).__name__}")
    return StoreError(f"the S3 store failed {what}: {one_line(exc)}")


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Translate every botocore, aiohttp and timeout failure inside into one-line store errors."""
    try:
        yield
    except (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise translate(exc, what) from exc
