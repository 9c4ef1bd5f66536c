"""Test harness: ``vcall agent`` subprocesses whose JSON-line events can be awaited, and a raw
classic peer (plain sockets, like a classic client of the family) for dialect tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

Event = dict[str, Any]
DEFAULT_WAIT = 10.0


class Agent:
    """One ``python -m vcall agent`` process; stdout events are collected by a thread."""

    def __init__(
        self, nick: str, server: tuple[str, int], *extra: str, env: dict[str, str] | None = None
    ) -> None:
        """``--password pw-NICK`` is passed unless ``env`` sets VCALL_PASSWORD (None: unset).

        Each agent is its own installation (issue 14): its key pair and its pinned discovery
        keys live in a temporary home (XDG_DATA_HOME / XDG_CONFIG_HOME, unless ``env`` sets
        them), removed by ``stop``."""
        self.nick = nick
        self.home = tempfile.mkdtemp(prefix=f"vcall-agent-{nick}-")
        environ = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "XDG_DATA_HOME": os.path.join(self.home, "data"),
            "XDG_CONFIG_HOME": os.path.join(self.home, "config"),
        }
        environ.pop("VCALL_PASSWORD", None)
        password: list[str] = ["--password", "pw-" + nick]
        if env is not None:
            environ.update(env)
            password = []
        cmd = [
            sys.executable, "-m", "vcall", "agent", "--nick", nick, *password,
            "--server", f"{server[0]}:{server[1]}", "--listen-ip", "127.0.0.1", *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ
        )
        self.events: list[tuple[float, Event]] = []  # (monotonic receive time, event)
        self.stderr = b""
        self._cond = threading.Condition()
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._cond:
                self.events.append((time.monotonic(), event))
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def names(self) -> list[str]:
        with self._cond:
            return [e["event"] for _, e in self.events]

    def wait(self, name: str, timeout: float = DEFAULT_WAIT, **fields: Any) -> Event:
        """The first event named ``name`` whose fields match; fails with the log on timeout."""
        return self.wait_timed(name, timeout, **fields)[1]

    def wait_timed(
        self, name: str, timeout: float = DEFAULT_WAIT, **fields: Any
    ) -> tuple[float, Event]:
        def match(e: Event) -> bool:
            return e["event"] == name and all(e.get(k) == v for k, v in fields.items())

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, e in self.events:
                    if match(e):
                        return t, e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.nick}: no {name} {fields} in {timeout} s; events:\n"
                        + "\n".join(json.dumps(e) for _, e in self.events)
                        + f"\nstderr:\n{self.stderr.decode(errors='replace')[-3000:]}"
                    )
                self._cond.wait(left)

    def has(self, name: str, **fields: Any) -> bool:
        with self._cond:
            return any(
                e["event"] == name and all(e.get(k) == v for k, v in fields.items())
                for _, e in self.events
            )

    def registered(self) -> Event:
        return self.wait("registered")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def exit_code(self, timeout: float = DEFAULT_WAIT) -> int:
        return self.proc.wait(timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """Make sure the process is gone (SIGCONT first, in case a test stopped it)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._out.join(2)
        self._err.join(2)
        shutil.rmtree(self.home, ignore_errors=True)


class AgentFactory:
    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.agents: list[Agent] = []

    def __call__(
        self,
        nick: str,
        *extra: str,
        wait_registered: bool = True,
        env: dict[str, str] | None = None,
    ) -> Agent:
        agent = Agent(nick, self.server, *extra, env=env)
        self.agents.append(agent)
        if wait_registered:
            agent.registered()
        return agent

    def stop_all(self) -> None:
        for agent in self.agents:
            agent.stop()


def recv_until_quiet(sock: socket.socket, quiet: float = 0.3, total: float = 3.0) -> bytes:
    """Everything a peer sends until it has been quiet for ``quiet`` s (or EOF)."""
    data = b""
    deadline = time.monotonic() + total
    sock.settimeout(quiet)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            if data:
                break
            continue
        if not chunk:
            break
        data += chunk
    return data


class RawListener:
    """A classic peer's call-control listener: collects every connection's bytes in order."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []  # one entry per connection, once it closed
        self.open_conns: list[socket.socket] = []
        self.keep_open = False
        self.on_accept: Callable[[socket.socket], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.on_accept is not None:
                self.on_accept(conn)
                continue
            self.received.append(recv_until_quiet(conn, quiet=0.5, total=5.0))
            conn.close()

    def wait_for(self, data: bytes, timeout: float = DEFAULT_WAIT) -> None:
        deadline = time.monotonic() + timeout
        while data not in self.received:
            assert time.monotonic() < deadline, f"never received {data!r}: {self.received}"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
        for conn in self.open_conns:
            conn.close()


def send_fresh(port: int, data: bytes, *, read_reply: bool = False) -> bytes:
    """The minority dialect: one message on its own connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(data)
        reply = recv_until_quiet(s) if read_reply else b""
    return reply


def register_raw(server: tuple[str, int], nick: str, port: int, protocols: Sequence[str]) -> None:
    from vcall.discovery.client import DiscoveryClient

    with DiscoveryClient(*server) as client:
        client.register(nick, "127.0.0.1", port, "pw-" + nick, protocols)
