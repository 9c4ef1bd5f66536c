"""``vcall agent`` as a real process for the GUI tests: driven on stdin, its JSON events read
from stdout, its log kept beside the discovery server's database."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

from tests.fixtures.discovery import DiscoveryProcess


class Agent:
    """``vcall agent`` with media, driven on stdin; its JSON events read from stdout."""

    def __init__(self, server: DiscoveryProcess, nick: str, *extra: str) -> None:
        cmd = [
            sys.executable, "-m", "vcall", "agent", "--nick", nick, "--password", "pw",
            "--server", f"127.0.0.1:{server.port}", "--listen-ip", "127.0.0.1",
            "--advertise-ip", "127.0.0.1", *extra,
        ]  # fmt: skip
        self.log_path = server.db_path.with_name(f"agent-{nick}.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        self._buffer = b""
        self.seen: list[dict[str, object]] = []

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_event(self, name: str, timeout: float = 20.0, **fields: object) -> dict[str, object]:
        """The next event ``name`` whose fields include ``fields``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                event = json.loads(line)
                self.seen.append(event)
                if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                    return event
            left = deadline - time.monotonic()
            assert left > 0, f"agent: no {name!r} {fields} within {timeout} s; saw {self.seen}"
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = self.proc.stdout.read1(4096)  # type: ignore[attr-defined]
                assert chunk, f"agent exited before {name!r}:\n{self.log_path.read_text()}"
                self._buffer += chunk

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
