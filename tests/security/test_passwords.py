"""The remembered password lives in the OS keyring, never in state.json (issue 14): against a
real Secret Service (gnome-keyring-daemon on a private D-Bus session bus), and on a headless
box without any keyring. Each case runs in a child process: the keyring backend is chosen
once per process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every process a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")

START_TIMEOUT = 10.0


def run_child(code: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "XDG_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@pytest.fixture
def secret_service(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private D-Bus session bus with an unlocked gnome-keyring (Secret Service); both are
    stopped at teardown, also on failure."""
    dbus, daemon = shutil.which("dbus-daemon"), shutil.which("gnome-keyring-daemon")
    if dbus is None or daemon is None:
        pytest.skip("needs dbus-daemon and gnome-keyring-daemon (apt-get install gnome-keyring)")
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home)
    bus = subprocess.Popen(
        [dbus, "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    keyring_proc: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        assert address.startswith("unix:"), address
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        keyring_proc = subprocess.Popen(
            [daemon, "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert keyring_proc.stdin is not None
        keyring_proc.stdin.write(b"test-login-password")
        keyring_proc.stdin.close()
        deadline = time.monotonic() + START_TIMEOUT
        probe = "import keyring; keyring.set_password('vcall-probe', 'p', 'x')"
        while subprocess.run([sys.executable, "-c", probe], env=env, check=False).returncode:
            assert time.monotonic() < deadline, "gnome-keyring did not come up"
            time.sleep(0.2)
        yield env
    finally:
        for proc in (keyring_proc, bus):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if bus.stdout is not None:
            bus.stdout.close()


def test_remembered_password_goes_to_the_secret_service(
    secret_service: dict[str, str], tmp_path: Path
) -> None:
    out = run_child(
        """
        import json, keyring, stat
        from pathlib import Path
        from vcall import passwords
        from vcall.config import State, load_state, save_state, update_state

        assert passwords.keyring_problem() is None, passwords.keyring_problem()
        path = Path("state.json")
        save_state(State("alice", "h:1", True, "s3cret-PW"), path)
        passwords.flush()
        raw = path.read_text()
        assert "s3cret-PW" not in raw and json.loads(raw)["remember_password"] is True, raw
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert keyring.get_password("vcall", "alice@h:1") == "s3cret-PW"
        assert load_state(path).password == "s3cret-PW"
        update_state(path, theme="dark")  # other fields change: the keyring keeps it
        passwords.flush()
        assert load_state(path) == State("alice", "h:1", True, "s3cret-PW", (), "dark")
        update_state(path, remember_password=False, password="")  # unticked: removed
        passwords.flush()
        assert keyring.get_password("vcall", "alice@h:1") is None
        assert load_state(path).password == ""

        # A state.json of an older version, with the password in clear: moved, then gone.
        path.write_text(json.dumps(
            {"nick": "bob", "server": "h:2", "remember_password": True, "password": "old-PW"}))
        assert load_state(path) == State("bob", "h:2", True, "old-PW")
        assert "old-PW" not in path.read_text()
        assert keyring.get_password("vcall", "bob@h:2") == "old-PW"
        print("done")
        """,
        secret_service,
        tmp_path,
    )
    assert "done" in out
    assert "moved the remembered password to the OS keyring" in out


def test_headless_box_remembers_nothing_and_says_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = run_child(
        """
        import json
        from pathlib import Path
        from vcall import passwords
        from vcall.config import State, load_state, save_state

        assert passwords.keyring_problem() is not None
        path = Path("state.json")
        save_state(State("alice", "h:1", True, "s3cret-PW"), path)
        raw = path.read_text()
        assert "s3cret-PW" not in raw
        assert json.loads(raw)["remember_password"] is False
        assert load_state(path) == State("alice", "h:1", False, "")
        path.write_text(json.dumps(
            {"nick": "bob", "server": "h:2", "remember_password": True, "password": "old-PW"}))
        assert load_state(path) == State("bob", "h:2", False, "")
        assert "old-PW" not in path.read_text()
        print("done")
        """,
        base_env(home),
        tmp_path,
    )
    assert "done" in out
    assert "password not remembered: no OS keyring is available" in out
    assert "dropped the remembered password" in out
