"""This daemon's replica id: who holds a mirror job's lease, in the catalog and in ``/metrics``."""

from __future__ import annotations

import os
import secrets
import socket


def replica_id() -> str:
    """``HOST-PID-RANDOM``: unique across replicas sharing a catalog, and across restarts of one (made once
    per daemon)."""
    return f"{socket.gethostname()[:96]}-{os.getpid()}-{secrets.token_hex(4)}"
