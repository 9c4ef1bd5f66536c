"""The lab's reaper: a small guardian process that removes a lab's namespaces if its owner dies.

The lab starts it (in its own session, without a death signal) before creating anything, and
keeps the write end of its stdin. A normal close writes ``done`` and the reaper exits without
doing anything. End-of-file without ``done`` means the owner died (even by SIGKILL, which no
``finally`` survives): the reaper kills every process left in the namespaces and deletes them.

Usage: ``python -m benchmarks.netlab.reaper NAME...`` (names must be lab namespaces).

A caveat: a child that the owner *forks* without exec (multiprocessing's "fork" method) while
the lab is open inherits the pipe's write end, so the reaper waits for that child too.

Guarantees:
- It only ever destroys the namespaces named on its command line, and only ``vclab*`` ones.
- Exit codes: 0 done or cleaned, 1 a namespace could not be removed, 2 bad arguments.
"""

from __future__ import annotations

import logging
import sys

from benchmarks.netlab import namespaces

logger = logging.getLogger(__name__)

DONE = b"done"


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="vclab reaper: %(message)s")
    if not names or not all(namespaces.NAME_RE.match(n) for n in names):
        print(f"vclab reaper: expected lab namespace names, got {names}", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read()  # returns at EOF: the owner closed the pipe or died
    if data.strip() == DONE:
        return 0
    failed = False
    for name in names:
        try:
            namespaces.destroy(name)
        except namespaces.NetnsError as exc:
            logger.warning("%s", exc)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
