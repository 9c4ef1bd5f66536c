"""Audio test fixtures: a private PulseAudio server with a null sink, started and always stopped.

``pulse`` (session) starts ``pulseaudio`` as a per-session daemon of its own: its own runtime,
state and home directory (a temp dir), ``--system=false`` (a user daemon, even as root: with
HOME and XDG_RUNTIME_DIR pointed at the temp dir it touches nothing of root's), no default
script (``-n``), ``--exit-idle-time=-1`` (it must not leave between tests), no shared memory
(``--disable-shm``: nothing left in /dev/shm), an anonymous unix socket and a null sink
``vcall_null`` at 48 kHz mono, whose monitor ``vcall_null.monitor`` is the default source. The
test process reaches it as PortAudio does on Debian: ALSA's ``pulse`` device (libasound2-plugins)
reading ``PULSE_SERVER``; PortAudio is re-initialised so it lists the new devices. At the end
(also after a failure) the daemon gets SIGTERM, then SIGKILL after 5 s, the directory is
removed, the environment restored and PortAudio re-initialised.

``pulse_private`` (function) is the same, for a test that kills its server on purpose.

Every test here also runs inside ``no_leaks`` (no child process may outlive a test).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SINK = "vcall_null"
START_TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _audio_leak_check(no_leaks: None) -> Iterator[None]:
    yield


@dataclass
class PulseServer:
    process: subprocess.Popen[bytes]
    directory: str
    server: str  # PULSE_SERVER value
    sink: str = SINK

    @property
    def monitor(self) -> str:
        return f"{self.sink}.monitor"

    def pactl(self, *args: str) -> str:
        env = {**os.environ, "PULSE_SERVER": self.server}
        done = subprocess.run(
            ["pactl", *args], env=env, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _start_pulse() -> PulseServer:
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("pulseaudio not installed (apt-get install pulseaudio)")
    directory = tempfile.mkdtemp(prefix="vcall-pulse-")
    socket_path = os.path.join(directory, "native")
    env = {
        **os.environ,
        "HOME": directory,
        "XDG_RUNTIME_DIR": directory,
        "XDG_CONFIG_HOME": directory,
        "PULSE_RUNTIME_PATH": directory,
        "PULSE_STATE_PATH": directory,
    }
    env.pop("PULSE_SERVER", None)
    args = [
        "pulseaudio",
        "--daemonize=no",
        "--system=false",
        "--exit-idle-time=-1",
        "-n",
        "--use-pid-file=no",
        "--disable-shm=yes",
        "--log-target=stderr",
        f"--load=module-native-protocol-unix socket={socket_path} auth-anonymous=1",
        f"--load=module-null-sink sink_name={SINK} rate=48000 channels=1",
    ]
    log = open(os.path.join(directory, "log"), "wb")  # noqa: SIM115 - the daemon's stderr
    # Its own session (a Ctrl-C to pytest must not reach it first), but it dies with us even
    # when pytest is killed: PR_SET_PDEATHSIG through setpriv, as the lab's programs do.
    if shutil.which("setpriv"):
        args = ["setpriv", "--pdeathsig", "KILL", "--", *args]
    process = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    log.close()
    server = PulseServer(process, directory, f"unix:{socket_path}")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if SINK in server.pactl("list", "short", "sinks"):
                break
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            with open(os.path.join(directory, "log"), errors="replace") as fh:
                text = fh.read()
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"pulseaudio did not start:\n{text[-2000:]}")
        time.sleep(0.1)
    server.pactl("set-default-source", server.monitor)
    return server


def _portaudio_sees(server: str | None) -> None:
    if server is None:
        os.environ.pop("PULSE_SERVER", None)
    else:
        os.environ["PULSE_SERVER"] = server
    from pipeline.audio.devices import rescan

    rescan()


def _run(server: PulseServer) -> Iterator[PulseServer]:
    previous = os.environ.get("PULSE_SERVER")
    try:
        _portaudio_sees(server.server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
        _portaudio_sees(previous)


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseServer]:
    yield from _run(_start_pulse())


@pytest.fixture
def pulse_private() -> Iterator[PulseServer]:
    yield from _run(_start_pulse())
