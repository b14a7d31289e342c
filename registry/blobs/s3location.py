"""Where an ``S3BlobStore`` keeps its objects: ``s3://BUCKET[/PREFIX]``, parsed (pure) and turned into keys.

    PREFIX/blobs/<sha256>                       each verified blob once (created conditionally)
    PREFIX/quarantine/<sha256>                  blobs found damaged, copied aside
    PREFIX/fills/<sha256>/<size>/<offset:016x>  the committed chunks of a fill in progress
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mreg.registry.errors import UsageError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()=+,;:@-]+$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and an optional key prefix (no leading or trailing slash; "" for none)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` joined by slashes below the prefix."""
        return "/".join((self.prefix, *parts) if self.prefix else parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """``s3://BUCKET[/PREFIX]`` as an ``S3Location``; a UsageError naming what is wrong otherwise."""
    if not url.startswith("s3://"):
        raise UsageError(f"invalid store {url!r}: expected s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UsageError(f"invalid S3 bucket {bucket!r} in {url!r}: 3-63 lowercase letters, digits, dots and dashes")
    prefix = prefix.rstrip("/")
    for segment in prefix.split("/") if prefix else ():
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise UsageError(f"invalid S3 prefix {prefix!r} in {url!r}: use letters, digits and -_.!*'()=+,;:@ "
                             "between single slashes")
    return S3Location(bucket, prefix)


def parse_endpoint(url: str) -> str:
    """An S3 endpoint URL, ``http[s]://HOST[:PORT][/PATH]`` (no query, fragment or credentials), without its
    trailing slash; a UsageError otherwise."""
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
            or parts.username is not None or parts.query or parts.fragment):
        raise UsageError("invalid S3 endpoint: expected http[s]://HOST[:PORT][/PATH], without credentials, "
                         "query or fragment")  # not echoed: it may hold a secret
    return url.strip().rstrip("/")
