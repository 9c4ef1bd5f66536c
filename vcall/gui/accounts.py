"""Which account a nick reaches on a discovery server (issue 15: nicks unique ignoring case).

Runs on the worker thread (blocking, one QUERY with a short deadline); the Tk thread never
calls it. A vcall server answers ``QUERY Alice`` with alice's record when the account is
spelled "alice" (docs/protocol.md section 1): :func:`account_spelling` returns that spelling, so
that the login screen can ask before logging into an account whose nick differs from what was
typed only in case.

Guarantees: :func:`account_spelling` raises nothing; any failure (server down, classic server,
unknown nick, garbage) is None, and the login then goes ahead and reports the failure itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from vcall.discovery.codec import fold_nick

logger = logging.getLogger(__name__)

LOOKUP_TIMEOUT: Final = 2.0  # s for the QUERY before a login; the login itself has its own

AccountFinder = Callable[[tuple[str, int], str], str | None]


def account_spelling(server: tuple[str, int], nick: str) -> str | None:
    """The stored spelling of the account ``nick`` reaches on ``server`` (e.g. "alice" for
    "Alice"), or None when there is none or the server cannot tell."""
    from vcall.discovery.client import DiscoveryClient, DiscoveryError  # noqa: PLC0415

    try:
        with DiscoveryClient(*server, timeout=LOOKUP_TIMEOUT) as client:
            return client.query(nick).nick
    except (DiscoveryError, ValueError, OSError) as exc:
        logger.debug("account lookup of %s at %s:%d: %r", nick, *server, exc)
        return None


def differs_only_in_case(typed: str, account: str | None) -> bool:
    """True when ``account`` is another spelling of ``typed`` ("Alice" vs "alice")."""
    return account is not None and account != typed and fold_nick(account) == fold_nick(typed)
