"""A private X server (Xvfb) for tests and benchmarks, and screenshots of it.

``Xvfb -displayfd`` picks a free display number itself and writes it to a pipe once it accepts
connections, so there is no race over lock files and no sleep. :func:`screenshot` grabs the
screen with ffmpeg's x11grab (installed with ffmpeg) into a PNG.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

DEFAULT_SIZE = (1280, 1024)
START_TIMEOUT = 10.0


class XvfbError(RuntimeError):
    """Xvfb is missing or did not start."""


class Xvfb:
    """``with Xvfb() as x: ...`` runs an X server on ``x.display`` (e.g. ``":3"``)."""

    def __init__(self, size: tuple[int, int] = DEFAULT_SIZE, depth: int = 24) -> None:
        self.size = size
        self.depth = depth
        self.display = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary = shutil.which("Xvfb")
        if binary is None:
            raise XvfbError("Xvfb is not installed (apt-get install xvfb)")
        read_fd, write_fd = os.pipe()
        width, height = self.size
        cmd = [
            binary, "-displayfd", str(write_fd), "-screen", "0",
            f"{width}x{height}x{self.depth}", "-nolisten", "tcp", "-noreset",
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(
                cmd,
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(write_fd)
        try:
            number = self._read_display(read_fd)
        finally:
            os.close(read_fd)
        self.display = f":{number}"
        logger.info("Xvfb on %s (%dx%dx%d)", self.display, width, height, self.depth)
        return self.display

    def _read_display(self, fd: int) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise XvfbError(f"Xvfb did not start within {START_TIMEOUT} s")
            chunk = os.read(fd, 64)
            if not chunk:
                self.stop()
                raise XvfbError("Xvfb exited before announcing its display")
            data += chunk
        return int(data.strip())

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Xvfb:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def screenshot(path: Path, display: str, size: tuple[int, int] = DEFAULT_SIZE) -> Path:
    """Grab the whole screen of ``display`` into the PNG ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    cmd = [
        "ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab",
        "-video_size", f"{width}x{height}", "-i", display, "-frames:v", "1", str(path),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    if result.returncode != 0:
        raise XvfbError(f"screenshot failed: {result.stderr.decode(errors='replace')}")
    return path
