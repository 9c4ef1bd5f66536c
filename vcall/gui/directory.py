"""This machine's directory: the first ``vcall`` serves it on a known port, later ones use it.

API::

    LOCAL_DIRECTORY_PORT = 8000                  # the classic discovery port, on loopback
    directory_db() -> Path                       # users persist here (platformdirs data dir)
    directory_answers(host, port, timeout=1.0) -> bool
    class LocalDirectory(port=LOCAL_DIRECTORY_PORT, db=None)
        .open() -> tuple[str, int]               # the server to log in to
        .serving -> bool                         # whether this process serves it
        .close() -> None

Two ``vcall`` started on one machine used to start a private in-memory server each on a random
port, so neither ever saw the other. Now the first one serves the directory on
127.0.0.1:``port`` (8000 unless ``--directory-port`` says otherwise) with its users in a
SQLite file, so they persist across restarts; a later ``vcall`` finds a discovery server
answering there (one LIST_USERS round trip, protocol section 1) and logs in to it. When the
port is taken by something that does not answer as a directory, an in-memory server on a free
port is the fallback (as before), and the log says why. The shared directory is announced with
mDNS/DNS-SD (``_vcall-dir._tcp.local.``, vcall/discovery/mdns.py) on loopback, where it
listens; the private fallback is not announced.

Guarantees:
- ``open`` never raises for a busy port or a silent peer: it falls back; OSError only when no
  loopback port at all can be had.
- The probe waits at most ``timeout`` seconds (it runs before the window opens, never in a Tk
  callback).
- Limitation: the directory lives in the first instance's process; when that one exits, the
  others keep their login until they log in again (then the next ``vcall`` started serves it).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import platformdirs

from vcall.discovery.client import DiscoveryClient, DiscoveryError
from vcall.discovery.embedded import EmbeddedServer
from vcall.discovery.server import ServerConfig

logger = logging.getLogger(__name__)

LOCAL_DIRECTORY_PORT = 8000
LOCAL_HOST = "127.0.0.1"


def directory_db() -> Path:
    """Where this machine's directory keeps its users (``$XDG_DATA_HOME/vcall/``)."""
    return Path(platformdirs.user_data_dir("vcall")) / "directory.sqlite3"


def directory_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a discovery server answers at (host, port): LIST_USERS gets a list."""
    client = DiscoveryClient(host, port, timeout=timeout)
    try:
        client.list_users()
    except (OSError, DiscoveryError, ValueError):
        return False
    finally:
        with contextlib.suppress(OSError):
            client.close()
    return True


class LocalDirectory:
    """Serve or join this machine's directory (see the module docstring)."""

    def __init__(self, port: int = LOCAL_DIRECTORY_PORT, db: Path | None = None) -> None:
        self.port = port
        self.db = db if db is not None else directory_db()
        self._server: EmbeddedServer | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def open(self) -> tuple[str, int]:
        """The directory to log in to: the one already served here, or ours."""
        if directory_answers(LOCAL_HOST, self.port):
            logger.info("using this machine's directory at %s:%d", LOCAL_HOST, self.port)
            return (LOCAL_HOST, self.port)
        try:
            self.db.parent.mkdir(parents=True, exist_ok=True)
            # Announced with mDNS (loopback only, where it listens): issue 15, mdns.py.
            config = ServerConfig(mdns=True)
            server = EmbeddedServer(LOCAL_HOST, self.port, db=str(self.db), config=config)
            address = server.start()
        except (OSError, sqlite3.Error) as exc:
            logger.warning(
                "cannot serve the directory on %s:%d (%s): a private one on a free port",
                LOCAL_HOST, self.port, exc,
            )  # fmt: skip
            server = EmbeddedServer(LOCAL_HOST, 0)
            address = server.start()
        self._server = server
        logger.info("serving this machine's directory at %s:%d", *address)
        return address

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
