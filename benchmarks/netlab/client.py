"""The lab's end of the impairer's control pipe: requests, replies, and stopping it.

Guarantees:
- One request at a time (a lock), from any thread; each waits at most its timeout for the one
  reply line, and framing is bounded (``control.LineReader``).
- Every failure is a :class:`~benchmarks.netlab.errors.LabError` carrying the tail of the
  impairer's stderr: it did not start, it died, it refused a command, it replied garbage.
- ``stop()`` asks it to quit, then SIGTERM, then SIGKILL; it is reaped and its log closed.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import threading
import time
from typing import IO, Any

from benchmarks.netlab.control import (
    Command,
    ControlError,
    LineReader,
    Quit,
    decode_reply,
    encode_command,
)
from benchmarks.netlab.errors import LabError
from benchmarks.netlab.namespaces import stop_process

REPLY_TIMEOUT = 5.0
LOG_TAIL = 4000  # characters of the impairer's stderr quoted in errors


class ImpairerClient:
    """The impairer child process (started by the lab) and its control pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        """``proc`` has pipes on stdin and stdout; ``log`` is the file its stderr goes to (the
        client owns it from now on)."""
        self.proc = proc
        self.log = log
        self._lines = LineReader()
        self._pending: list[bytes] = []
        self._lock = threading.Lock()

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-LOG_TAIL:]

    def read_reply(self, timeout: float) -> dict[str, Any]:
        """The next reply line (the first one is the ready line); LabError unless ``ok``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while not self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"impairer: no reply within {timeout} s\n{self.log_text()}")
                if not sel.select(left):
                    continue
                data = os.read(fd, 65_536)
                if not data:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(1.0)
                    raise LabError(
                        f"impairer exited with {self.proc.returncode}:\n{self.log_text()}"
                    )
                try:
                    self._pending += self._lines.feed(data)
                except ControlError as exc:
                    raise LabError(f"impairer: {exc}") from exc
        line = self._pending.pop(0)
        try:
            reply = decode_reply(line)
        except ControlError as exc:
            raise LabError(f"impairer: {exc}") from exc
        if not reply["ok"]:
            raise LabError(f"impairer refused a command: {reply.get('error')}")
        return reply

    def request(self, cmd: Command, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:
            try:
                self.proc.stdin.write(encode_command(cmd))
                self.proc.stdin.flush()
            except OSError as exc:  # BrokenPipeError: it died
                raise LabError(f"impairer is gone ({exc}):\n{self.log_text()}") from exc
            return self.read_reply(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(LabError, subprocess.TimeoutExpired):
                self.request(Quit(), timeout=1.0)
                self.proc.wait(1.0)  # it replied; give it the moment it needs to exit
        stop_process(self.proc)
        self.log.close()
