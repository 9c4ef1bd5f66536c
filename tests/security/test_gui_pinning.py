"""The Tk client under Xvfb against a real discovery server process (issue 14): it logs in over
the TLS port, pins the server's key beside its state file and shows it; a changed server key
stops the login with a message naming both keys; "remember password" without an OS keyring
is off and says why."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client
from vcall.config import Config
from vcall.discovery.tls import PinStore
from vcall.gui.model import Screen
from vcall.identity import load_or_create_identity
from vcall.passwords import keyring_problem

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def client(xvfb_display: str, tmp_path: Path) -> Iterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        made.append(Client(Config(), tmp_path / "state.json"))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_login_pins_the_server_key_and_a_change_is_refused(
    client: Callable[[], Client],
    discovery_server: DiscoveryProcess,
    tmp_path: Path,
    screenshot: Callable[[str], np.ndarray],
) -> None:
    server = f"127.0.0.1:{discovery_server.port}"
    server_dir = discovery_server.db_path.parent / "discovery-identity"
    c = client()
    if keyring_problem() is not None:  # a headless box: the box is off and says why
        assert str(c.app.login.remember_check.cget("state")) == "disabled"
        assert "no OS keyring" in str(c.app.login.remember_check.cget("text"))
        screenshot("login-no-keyring")
    c.login("alice", "secret", server)
    c.pump_until(lambda: c.app.model.screen is Screen.MAIN, 15, "main screen")
    key = load_or_create_identity(server_dir).fingerprint
    pin = PinStore(tmp_path / "servers.json").get(*discovery_server.address)
    assert pin is not None
    assert pin.fingerprint == key
    c.pump_until(lambda: key in c.app.main.message.cget("text"), 10, "server key shown")
    assert "encrypted" in c.app.main.message.cget("text")
    screenshot("main-server-key")
    c.close()

    # The server comes back with another key (as an impostor on its address would).
    discovery_server.stop()
    shutil.rmtree(server_dir)
    discovery_server.start()
    new_key = load_or_create_identity(server_dir).fingerprint
    again = client()
    again.login("alice", "secret", server)
    again.pump_until(lambda: new_key in again.app.login.message.cget("text"), 15, "login refused")
    text = again.app.login.message.cget("text")
    assert key in text
    assert again.app.model.screen is Screen.LOGIN
    screenshot("login-server-key-changed")
