"""A real ``redis-server`` (and ``redis-sentinel``) child process for the discovery tests.

Each :class:`RedisProcess` listens on a free loopback port with its own directory (AOF on,
fsync every write: what the tests check is the store, not the disk), logs to a file there,
and is stopped by SIGTERM (SIGKILL after a few seconds). Fixtures in conftest.py make sure it
is stopped even when a test fails; tests skip with a clear message if the binary is missing.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.discovery import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian: apt-get install {binary})")
    return path


def ping(port: int, timeout: float = 0.5) -> bytes:
    """One RESP round trip: ``PING`` -> ``+PONG`` (raises OSError when nothing listens)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command (RESP array) and return the raw reply (one recv)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        return sock.recv(65536)


class RedisProcess:
    """``redis-server`` (or, with ``sentinel_conf``, ``redis-sentinel``) on 127.0.0.1."""

    def __init__(self, directory: Path, *, extra: list[str] | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command_line(self) -> list[str]:
        return [
            require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--logfile", str(self.log_path), "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            self.command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"redis exited with {code}:\n{self.log()}")
            try:
                if ping(self.port).startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis not answering on {self.port}:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class SentinelProcess(RedisProcess):
    """``redis-sentinel`` watching one primary (quorum 1, fast failover for tests)."""

    def __init__(self, directory: Path, primary_port: int, service: str = "vcall") -> None:
        super().__init__(directory)
        self.primary_port = primary_port
        self.service = service

    def command_line(self) -> list[str]:
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.log_path}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 500\n"
            f"sentinel failover-timeout {self.service} 5000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        return [require("redis-sentinel"), str(conf)]
