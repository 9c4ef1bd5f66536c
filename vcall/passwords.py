"""The remembered password, in the OS keyring and nowhere else (issue 14).

"Remember password" keeps the password of one account (``nick@host:port``) under the service
name ``vcall`` in the platform's keyring through the ``keyring`` package: the Secret Service
(GNOME Keyring, KWallet) on Linux, the Keychain on macOS, the Credential Locker on Windows.
With no such backend (a headless box), :func:`keyring_problem` says why and nothing is
remembered; a backend that stores in a plain file (``keyrings.alt``) counts as none.

Every keyring call runs on one background thread, in submission order: :func:`store` and
:func:`forget` return at once (a D-Bus round trip never holds up the caller, e.g. the Tk
thread), :func:`fetch` waits for its answer at most :data:`TIMEOUT` seconds (and so sees every
earlier store/forget of this process). Failures are logged, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Final

logger = logging.getLogger(__name__)

SERVICE: Final = "vcall"
TIMEOUT: Final = 5.0  # s a fetch waits for the keyring
_NO_BACKEND: Final = (
    "no OS keyring is available (Secret Service/GNOME Keyring, KWallet, macOS Keychain or "
    "Windows Credential Locker)"
)

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_problem: list[str | None] = []  # [] = not checked yet; [None] = usable; [reason]


def account(nick: str, server: str) -> str:
    """The keyring user name of an account: ``nick@host:port``."""
    return f"{nick}@{server}"


def keyring_problem() -> str | None:
    """None if a real OS keyring backend is usable, else why not (words for the user).

    Checked once per process (``keyring.get_keyring()``; on Linux this asks D-Bus whether a
    Secret Service runs)."""
    with _lock:
        if not _problem:
            _problem.append(_check_backend())
        return _problem[0]


def _check_backend() -> str | None:
    try:
        import keyring  # noqa: PLC0415 (optional at run time: only for remembered passwords)
        from keyring.backends import chainer, fail, null  # noqa: PLC0415

        backend = keyring.get_keyring()
    except Exception as exc:  # the package or its backend discovery failed
        return f"{_NO_BACKEND}: {exc}"
    if isinstance(backend, fail.Keyring | null.Keyring):
        return _NO_BACKEND
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return _NO_BACKEND
    if type(backend).__module__.startswith("keyrings.alt"):
        return f"{_NO_BACKEND} (the {type(backend).__name__} backend would keep it in a file)"
    return None


def _submit(job: str, name: str, password: str = "") -> Future[str | None]:
    global _pool  # noqa: PLW0603 (one serial keyring thread per process)
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, "vcall-keyring")
        return _pool.submit(_run, job, name, password)


def _run(job: str, name: str, password: str) -> str | None:
    import keyring  # noqa: PLC0415
    from keyring.errors import KeyringError, PasswordDeleteError  # noqa: PLC0415

    try:
        if job == "set":
            keyring.set_password(SERVICE, name, password)
        elif job == "delete":
            # Nothing stored is what we wanted.
            with contextlib.suppress(PasswordDeleteError):
                keyring.delete_password(SERVICE, name)
        elif job == "get":
            return keyring.get_password(SERVICE, name)
    except (KeyringError, OSError, RuntimeError) as exc:  # D-Bus gone, locked, refused
        logger.warning("keyring: cannot %s the password of %s: %s", job, name, exc)
    return None


def store(name: str, password: str) -> bool:
    """Queue keeping ``password`` for account ``name``; False (nothing queued) without a
    usable keyring (see keyring_problem)."""
    if keyring_problem() is not None:
        return False
    _submit("set", name, password)
    return True


def forget(name: str) -> None:
    """Queue removing the password of ``name`` (nothing happens if none is kept)."""
    if keyring_problem() is None:
        _submit("delete", name)


def fetch(name: str) -> str:
    """The password kept for ``name``, "" if none, no keyring, or no answer within TIMEOUT."""
    if keyring_problem() is not None:
        return ""
    try:
        return _submit("get", name).result(TIMEOUT) or ""
    except FutureTimeout:
        logger.warning("keyring: no answer within %.0f s; password not filled in", TIMEOUT)
        return ""


def flush(timeout: float = TIMEOUT) -> None:
    """Wait until every queued keyring call of this process has run (tests, shutdown)."""
    if keyring_problem() is None:
        _submit("noop", "").result(timeout)
