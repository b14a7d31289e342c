"""TLS contexts made while a command is imported get the system's CA certificates on first use, not then.

aiohttp builds two contexts when it is imported (verified and unverified), and each parses the whole CA
bundle: 18 % of the instructions of a ``mreg pull`` of a small file over plain HTTP, which never uses
them (issue #16). Inside ``cas_on_first_use()`` a context's ``set_default_verify_paths`` is put off until
the context first wraps a connection (``wrap_bio``, which asyncio uses, or ``wrap_socket``): every
handshake still verifies against the same certificates, loaded the moment they are needed.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_WRAPPERS = ("wrap_bio", "wrap_socket")
_set_default_verify_paths = ssl.SSLContext.set_default_verify_paths
_lock = threading.Lock()


def _load_when_wrapping(context: ssl.SSLContext) -> None:
    """Stands in for ``set_default_verify_paths``: the real one runs before ``context`` first wraps a connection."""
    def first(name: str) -> Callable[..., Any]:
        def wrap(*args: Any, **kwargs: Any) -> Any:
            with _lock:
                if name in vars(context):
                    for wrapper in _WRAPPERS:
                        delattr(context, wrapper)
                    _set_default_verify_paths(context)
            return getattr(context, name)(*args, **kwargs)
        return wrap

    for name in _WRAPPERS:
        setattr(context, name, first(name))


@contextmanager
def cas_on_first_use() -> Iterator[None]:
    """While inside, contexts that load the default CA paths load them when they first wrap a connection."""
    if "set_default_verify_paths" in vars(ssl.SSLContext):
        raise RuntimeError("ssl.SSLContext.set_default_verify_paths is already replaced")
    ssl.SSLContext.set_default_verify_paths = _load_when_wrapping  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del ssl.SSLContext.set_default_verify_paths
