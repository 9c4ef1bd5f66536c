"""Helpers for the interop tests: a known picture, a vcall sender, a vcall receiver, and
running ffmpeg / GStreamer as real processes on loopback."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from turbojpeg import TJSAMP_420, TJSAMP_422, TurboJPEG

from pipeline.codecs.base import CodecFrame
from tests.fixtures.rtpjpeg import JpegRtpReceiver, JpegRtpSender

W, H = 320, 240
STRIP_Y = 224  # rows 224..239 carry the frame index as a grey level
# Quadrants (RGB) of the top 224 rows, split at x=160 and y=112 (MCU-aligned edges).
QUADRANTS = {
    "top_left": (255, 0, 0),
    "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 255, 255),
}
_BOXES = {
    "top_left": (0, 0),
    "top_right": (160, 0),
    "bottom_left": (0, 112),
    "bottom_right": (160, 112),
}
TJ = TurboJPEG()
U8 = npt.NDArray[np.uint8]


def strip_level(index: int) -> int:
    return 16 + 8 * (index % 28)


def pattern_rgb(index: int = 0) -> U8:
    img = np.zeros((H, W, 3), np.uint8)
    for name, (x, y) in _BOXES.items():
        img[y : y + 112, x : x + 160] = QUADRANTS[name]
    img[STRIP_Y:, :] = strip_level(index)
    return img


def write_pattern_png(path: Path) -> Path:
    cv2.imwrite(str(path), pattern_rgb(0)[:, :, ::-1].copy())
    return path


def check_pattern(rgb: U8, index: int | None = None, tolerance: float = 14.0) -> None:
    """Assert that a decoded frame shows the pattern (means of inner areas of each part)."""
    assert rgb.shape == (H, W, 3), rgb.shape
    for name, (x, y) in _BOXES.items():
        inner = rgb[y + 16 : y + 112 - 16, x + 16 : x + 160 - 16].reshape(-1, 3)
        mean = inner.mean(axis=0)
        expected = np.array(QUADRANTS[name], float)
        assert np.abs(mean - expected).max() <= tolerance, (name, mean.round(1), expected)
    if index is not None:
        strip = rgb[STRIP_Y + 4 : H - 4, 16:-16].mean()
        assert abs(strip - strip_level(index)) <= 6, (index, strip)


def encode(index: int, *, quality: int = 80, sub: str = "420", restart: int = 0) -> bytes:
    bgr = pattern_rgb(index)[:, :, ::-1].copy()
    if restart:
        ok, buf = cv2.imencode(
            ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_RST_INTERVAL, restart]
        )
        assert ok
        return buf.tobytes()
    samp = TJSAMP_420 if sub == "420" else TJSAMP_422
    return bytes(TJ.encode(bgr, quality=quality, jpeg_subsample=samp))


def send_vcall(
    port: int,
    count: int,
    *,
    q: int = 255,
    quality: int = 80,
    sub: str = "420",
    restart: int = 0,
    fps: float = 60.0,
    ssrc: int = 0x5EED0001,
    stop: threading.Event | None = None,
) -> None:
    """Send ``count`` frames of the pattern (frame i carries i in its strip) as RTP/JPEG,
    or fewer if ``stop`` is set meanwhile."""
    pk = JpegRtpSender(ssrc, q=q, initial_seq=65530)  # wraps after six packets
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            if stop is not None and stop.is_set():
                break
            ts = (0xFFFFFFFF - 3000 + i * 1500) & 0xFFFFFFFF  # the timestamp wraps too
            for datagram in pk.packetize_jpeg(
                encode(i, quality=quality, sub=sub, restart=restart), ts
            ):
                sock.sendto(datagram, ("127.0.0.1", port))
            time.sleep(1 / fps)


def free_port() -> int:
    """An even UDP port whose successor (RTCP) is free too."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port % 2 == 0 and port < 65534:
            with (
                contextlib.suppress(OSError),
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2,
            ):
                s2.bind(("127.0.0.1", port + 1))
                return port
    raise RuntimeError("no free UDP port pair")


def udp_bound(port: int) -> bool:
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as fh:
            for line in fh.readlines()[1:]:
                local = line.split()[1]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_bound(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"{proc.args!r} exited early: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing bound UDP port {port} within {timeout} s")
        time.sleep(0.02)


@contextlib.contextmanager
def running(cmd: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is always stopped and reaped when the block ends."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def raw_frames(path: Path) -> list[U8]:
    data = np.fromfile(path, np.uint8)
    size = W * H * 3
    assert data.size % size == 0, f"{data.size} bytes is not a whole number of frames"
    return [f.reshape(H, W, 3) for f in data.reshape(-1, size)]


def receive_vcall(
    sock: socket.socket,
    count: int,
    timeout: float,
    reassembler: JpegRtpReceiver,
    seen: list[bytes] | None = None,
) -> list[CodecFrame]:
    """Reassemble until ``count`` frames or ``timeout`` seconds (the socket is bound first).

    ``seen`` collects the payload of every first fragment (offset 0), to check what a tool
    sent (type, Q, table length)."""
    frames: list[CodecFrame] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.1)
    while len(frames) < count and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if seen is not None and data[13:16] == b"\x00\x00\x00":
            seen.append(data[12:])
        frames += reassembler.push(data, time.monotonic())
    return frames


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    return sock


def decode(jpeg: bytes) -> U8:
    return np.asarray(TJ.decode(jpeg, pixel_format=0))  # TJPF_RGB
