"""Real login and main screens under Xvfb, against a real discovery server process:
registration, the user list with filter-as-you-type, what is remembered, and the messages for a
wrong password and a server that is down."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess, free_port
from tests.gui.harness import Client
from vcall.config import Config
from vcall.discovery.client import DiscoveryClient
from vcall.discovery.mdns import Advertiser
from vcall.gui.model import Screen
from vcall.passwords import keyring_problem

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def client(xvfb_display: str, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(config: Config | None = None) -> Client:
        made.append(Client(config or Config(), tmp_path / "state.json"))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_register_list_filter_and_remember(
    client: Callable[..., Client],
    discovery_server: DiscoveryProcess,
    tmp_path: Path,
    screenshot: Callable[[str], np.ndarray],
) -> None:
    server = f"127.0.0.1:{discovery_server.port}"
    with DiscoveryClient(*discovery_server.address) as other:
        for nick in ["bob", "bobby", "carol", "dave"]:
            other.register(nick, "127.0.0.1", free_port(), "pw", ["V0"])  # no listener

    c = client()
    c.login("alice", "secret", server)
    c.pump_until(lambda: c.app.model.screen is Screen.MAIN, 15, "main screen")
    main = c.app.main
    c.pump_until(main.visible_nicks, 10, "user list")
    assert main.visible_nicks() == ["bob", "bobby", "carol", "dave"]  # not alice herself
    assert "alice @ " + server in main.header.cget("text")

    c.type_into(main.filter_entry, "bo")
    assert main.visible_nicks() == ["bob", "bobby"]
    c.type_into(main.filter_entry, "bb", clear=False)
    assert main.visible_nicks() == ["bobby"]
    c.type_into(main.filter_entry, "ROL")
    assert main.visible_nicks() == ["carol"]
    c.type_into(main.filter_entry, "")
    screenshot("main-screen")

    # Someone registers after the list was fetched: Refresh shows them.
    with DiscoveryClient(*discovery_server.address) as other:
        other.register("erin", "127.0.0.1", 9100, "pw", ["V0"])
    c.click(main.refresh_button)
    c.pump_until(lambda: "erin" in main.visible_nicks(), 10, "erin after refresh")

    # "Call selected": nothing selected says so; with carol selected it calls carol, whose
    # registered port has no listener, so the call fails with the unreachable-peer words.
    c.click(main.call_selected_button)
    assert main.message.cget("text") == "Select a user to call first."
    carol = next(i for i in main.tree.get_children() if main.tree.item(i, "text") == "carol")
    main.tree.selection_set(carol)
    c.click(main.call_selected_button)
    c.pump_until(
        lambda: main.message.cget("text").startswith("Cannot reach carol"), 30, "unreachable"
    )
    assert c.app.model.screen is Screen.MAIN and not c.app.model.in_call

    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"nick": "alice", "server": server, "remember_password": False}
    assert "secret" not in (tmp_path / "state.json").read_text()

    c.click(main.logout_button)
    c.pump_until(lambda: c.app.model.screen is Screen.LOGIN, 10, "login screen")
    c.close()

    # A new start remembers nick and server, not the password.
    again = client()
    login = again.app.login
    assert (login.nick.get(), login.server.get(), login.password.get()) == ("alice", server, "")


def test_remember_password_when_asked(
    client: Callable[..., Client], discovery_server: DiscoveryProcess, tmp_path: Path
) -> None:
    c = client()
    if keyring_problem():
        # No OS keyring (a headless box): the choice is greyed out and nothing is remembered;
        # the keyring case itself is tests/security/test_passwords.py.
        assert str(c.app.login.remember_check.cget("state")) == "disabled"
        c.login("zoe", "kept", f"127.0.0.1:{discovery_server.port}")
        c.pump_until(lambda: c.app.model.screen is Screen.MAIN, 15, "main screen")
        assert "kept" not in (tmp_path / "state.json").read_text()
        assert client().app.login.password.get() == ""
    else:
        c.click(c.app.login.remember_check)
        assert c.app.login.remember.get()
        c.login("zoe", "kept", f"127.0.0.1:{discovery_server.port}")
        c.pump_until(lambda: c.app.model.screen is Screen.MAIN, 15, "main screen")
        assert "kept" not in (tmp_path / "state.json").read_text()  # in the keyring
        again = client()
        assert again.app.login.password.get() == "kept"

    # Exit (main screen button): the window goes at once; the worker unregisters and stops.
    c.click(c.app.main.exit_button)
    assert c.root.state() == "withdrawn"
    c.pump_until(lambda: not c.app.worker.running, 15, "worker stopped after Exit")


def test_wrong_password_message(
    client: Callable[..., Client],
    discovery_server: DiscoveryProcess,
    screenshot: Callable[[str], np.ndarray],
) -> None:
    with DiscoveryClient(*discovery_server.address) as other:
        other.register("alice", "127.0.0.1", 9000, "right", ["V0"])
    c = client()
    c.login("alice", "wrong", f"127.0.0.1:{discovery_server.port}")
    message = c.app.login.message
    c.pump_until(lambda: "Wrong password" in message.cget("text"), 15, "wrong password")
    assert c.app.model.screen is Screen.LOGIN
    assert str(c.app.login.button.cget("state")) == "normal"  # can try again
    screenshot("wrong-password")


def test_server_down_message(client: Callable[..., Client]) -> None:
    port = free_port()  # nothing listens there
    c = client()
    c.login("alice", "pw", f"127.0.0.1:{port}")
    message = c.app.login.message
    c.pump_until(lambda: "down or unreachable" in message.cget("text"), 20, "server down")
    assert f"127.0.0.1:{port}" in message.cget("text")
    assert c.app.model.screen is Screen.LOGIN


def test_local_validation(client: Callable[..., Client]) -> None:
    c = client()
    c.login("has space", "pw", "127.0.0.1:1")
    assert "spaces" in c.app.login.message.cget("text")
    c.login("ok", "pw", "127.0.0.1:99999")
    assert "port" in c.app.login.message.cget("text")


def test_nick_differing_only_in_case_asks_first(
    client: Callable[..., Client],
    discovery_server: DiscoveryProcess,
    tmp_path: Path,
    screenshot: Callable[[str], np.ndarray],
) -> None:
    """Issue 15: "Alice" when "alice" exists opens a question; "Choose another nick" logs in
    nowhere, "Log in as alice" logs into alice's account with its spelling."""
    server = f"127.0.0.1:{discovery_server.port}"
    with DiscoveryClient(*discovery_server.address) as other:
        other.register("alice", "127.0.0.1", 9000, "secret", ["V0"])
    c = client()
    login = c.app.login
    c.login("Alice", "secret", server)
    c.pump_until(lambda: login.question is not None, 15, "the question")
    question = login.question
    assert question is not None
    c.pump_until(question.winfo_viewable, 5, "question mapped")
    assert "alice" in question.text.cget("text") and "Alice" in question.text.cget("text")
    image = screenshot("nick-case-question")
    assert image.std() > 5  # something is drawn
    c.app.set_theme("dark")
    c.pump(0.3)
    screenshot("nick-case-question-dark")
    c.app.set_theme("light")
    c.click(question.no_button)
    assert not question.winfo_exists()
    assert "alice is taken" in login.message.cget("text")
    assert c.app.model.screen is Screen.LOGIN
    assert (
        not (tmp_path / "state.json").exists()
        or "Alice" not in (tmp_path / "state.json").read_text()
    )

    c.click(login.button)  # the same nick again: asked again
    c.pump_until(lambda: login.question is not None and login.question.winfo_exists(), 15, "ask")
    question = login.question
    assert question is not None
    c.click(question.yes_button)
    c.pump_until(lambda: c.app.model.screen is Screen.MAIN, 15, "main screen")
    assert c.app.main.header.cget("text").startswith("alice @ ")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["nick"] == "alice"  # the next start fills in the account's spelling
    with DiscoveryClient(*discovery_server.address) as other:
        assert [u.nick for u in other.list_users()] == ["alice"]  # one account


def test_server_choice_lists_directories_found_on_the_network(
    client: Callable[..., Client],
    discovery_server: DiscoveryProcess,
    screenshot: Callable[[str], np.ndarray],
) -> None:
    """Issue 15: a directory announced with mDNS (a real announcement on loopback) is offered
    in the server choice; choosing it fills in its address, and the login goes there."""
    name = f"office-{uuid.uuid4().hex[:6]}"  # other runs on this machine may announce too
    advert = Advertiser(name, "127.0.0.1", discovery_server.port, None)
    advert.start()
    try:
        c = client()
        login = c.app.login
        label = f"{name} — 127.0.0.1:{discovery_server.port}"
        c.pump_until(lambda: label in login.server_choice.cget("values"), 15, "the directory")
        c.root.tk.call("ttk::combobox::Post", str(login.server_choice))  # the list, open
        c.pump(0.3)
        screenshot("server-choice")
        c.root.tk.call("ttk::combobox::Unpost", str(login.server_choice))
        login.server_choice.set(label)
        login.server_choice.event_generate("<<ComboboxSelected>>")
        assert login.server.get() == f"127.0.0.1:{discovery_server.port}"
        c.type_into(login.entries["nick"], "lan")
        c.type_into(login.entries["password"], "pw")
        c.click(login.button)
        c.pump_until(lambda: c.app.model.screen is Screen.MAIN, 15, "main screen")
    finally:
        advert.close()
