"""Who may use the mirror job endpoints: the admin token policy.

On loopback (127.0.0.0/8, ::1, ``localhost``) without a configured token the endpoints are open,
as only local processes can reach them. A configured token (``--admin-token`` / ``MREG_ADMIN_TOKEN``)
is required for every change, and, beyond loopback, for reading the jobs too. A daemon listening
beyond loopback without a token keeps the endpoints shut (403). Tokens are compared in constant
time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from enum import Enum

from aiohttp import web

from mreg.daemon.hub.answers import hub_error
from mreg.daemon.serving.upstream import bearer_token

LOOPBACK_NAMES = ("localhost",)


class Verdict(Enum):
    ALLOW = "allow"
    NEEDS_TOKEN = "needs token"
    CLOSED = "closed"


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the daemon reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def policy(host: str, token: str | None, mutation: bool) -> Verdict:
    """What a request needs: nothing, the admin token, or (no token configured beyond loopback) no way in."""
    if token:
        return Verdict.NEEDS_TOKEN if mutation or not is_loopback(host) else Verdict.ALLOW
    return Verdict.ALLOW if is_loopback(host) else Verdict.CLOSED


def refusal(request: web.Request, host: str, token: str | None, mutation: bool) -> web.Response | None:
    """The answer refusing ``request`` under the policy, or None if it may proceed."""
    verdict = policy(host, token, mutation)
    if verdict is Verdict.CLOSED:
        return hub_error(403, None, "mirror jobs are disabled: the daemon listens beyond loopback without "
                                    "an admin token (set MREG_ADMIN_TOKEN)")
    if verdict is Verdict.NEEDS_TOKEN:
        given = bearer_token(request)
        if given is None or token is None or not hmac.compare_digest(given.encode(), token.encode()):
            answer = hub_error(401, None, "this needs the admin token (Authorization: Bearer <token>)")
            answer.headers["WWW-Authenticate"] = 'Bearer realm="mreg admin"'
            return answer
    return None
