"""This daemon's replica id: who holds a mirror job's lease, in the catalog and in ``/metrics``."""

from __future__ import annotations

import os
import secrets
import socket


def _host() -> str:
    return socket.gethostname()[:96]


def replica_id() -> str:
    """``HOST-PID-RANDOM``: unique across replicas sharing a catalog, and across restarts of one (made once
    per daemon)."""
    return f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def gone_from_this_host(replica: str, me: str) -> bool:
    """Whether ``replica`` (another daemon's id) ran on this host under a process that is no longer there:
    its leases can end now rather than when they run out. A process with its pid still running is taken
    for it (unless that process is this daemon, ``me``: a restart in a container often gets the same pid)."""
    head, _, suffix = replica.rpartition("-")
    host, _, pid = head.rpartition("-")
    if replica == me or not suffix or host != _host() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
