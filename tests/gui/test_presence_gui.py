"""Presence in the real client (issue 15), under Xvfb: two client windows and a real discovery
server process; one quits, and the other's list shows it offline within the list interval;
the address is behind "Details…"."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client
from tests.gui.test_worker import FakeManager, FakeMedia, wait_for
from vcall.call import events as ce
from vcall.config import Config
from vcall.discovery.client import DiscoveryClient, DiscoveryError
from vcall.gui import events as ev
from vcall.gui.accounts import differs_only_in_case
from vcall.gui.events import UserRow, UsersListed
from vcall.gui.model import Screen
from vcall.gui.presence import (
    LIST_INTERVAL,
    MAX_LIST_INTERVAL,
    PresenceKeeper,
    Registration,
    list_interval,
    registration_of,
    seen_text,
    status_text,
)
from vcall.gui.worker import ClientWorker

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def client(xvfb_display: str, tmp_path: Path) -> Iterator[Callable[[str, str], Client]]:
    made: list[Client] = []

    def make(name: str, geometry: str) -> Client:
        home = tmp_path / name
        home.mkdir()
        made.append(Client(Config(), home / "state.json", geometry=geometry))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_a_client_that_quits_shows_offline(
    client: Callable[[str, str], Client],
    discovery_server: DiscoveryProcess,
    screenshot: Callable[[str], np.ndarray],
) -> None:
    server = f"127.0.0.1:{discovery_server.port}"
    with DiscoveryClient(*discovery_server.address) as other:  # a classic client
        other.register("carl", "127.0.0.1", 9100, "pw", ["V0"])
    alice = client("alice", "1000x640+0+0")
    alice.login("alice", "pw-a", server)
    alice.pump_until(lambda: alice.app.model.screen is Screen.MAIN, 15, "alice logged in")
    bob = client("bob", "600x400+1010+0")
    bob.login("bob", "pw-b", server)
    bob.pump_until(lambda: bob.app.model.screen is Screen.MAIN, 15, "bob logged in")

    main = alice.app.main
    # Nobody presses Refresh: the list refreshes itself.
    alice.pump_until(lambda: main.status_of("bob") == "online", 3 * LIST_INTERVAL, "bob online")
    assert main.status_of("carl") == "unknown"  # a classic client: the protocol cannot say
    assert main.visible_nicks() == ["bob", "carl"]  # online first
    assert "127.0.0.1" not in " ".join(
        " ".join(map(str, main.tree.item(i, "values"))) for i in main.tree.get_children()
    )  # the address is not on the list itself

    bob.close()  # quits: Shutdown -> hang up, VCALL_OFFLINE
    quit_at = time.monotonic()
    alice.pump_until(lambda: main.status_of("bob") == "offline", 3 * LIST_INTERVAL, "offline")
    took = time.monotonic() - quit_at
    print(f"bob shown offline {took:.2f} s after quitting (list interval {LIST_INTERVAL} s)")
    assert main.visible_nicks() == ["carl", "bob"]  # offline last
    screenshot("bob-offline")

    # Withdrawn (or iconified: that needs a window manager, which Xvfb lacks), the window
    # stops polling the list (the keep-alive goes on); shown again, it lists at once (due).
    keeper = alice.app.worker._keeper
    assert keeper is not None and not keeper.paused
    alice.app.root.withdraw()
    alice.pump_until(lambda: keeper.paused, 5, "list paused while withdrawn")
    lists = keeper.lists
    alice.pump(LIST_INTERVAL + 1.0)
    assert keeper.lists == lists
    alice.app.root.deiconify()
    alice.pump_until(lambda: keeper.lists > lists, 5, "list again once shown")
    alice.pump_until(lambda: main.status_of("bob") == "offline", 5, "list shown again")

    # Details: the address and when bob was last seen.
    bob_row = next(i for i in main.tree.get_children() if main.tree.item(i, "text") == "bob")
    main.tree.selection_set(bob_row)
    alice.click(main.details_button)
    details = main.details
    assert details is not None
    alice.pump_until(details.winfo_viewable, 5, "details window")
    rows = dict(details.rows)
    assert rows["Status"] == "offline"
    assert rows["Address"].startswith("127.0.0.1:") and rows["Address"] != "127.0.0.1:0"
    assert rows["Last seen"].endswith("ago") or rows["Last seen"] == "just now"
    screenshot("bob-details")
    details.destroy()
    alice.app.set_theme("dark")
    main.set_users(main.users)  # re-rendered as the next list would
    alice.pump(0.3)
    dark = screenshot("bob-offline-dark")
    assert dark.mean() < 128  # the dark palette is on screen

    # bob's account is still listed to classic clients, as the protocol allows.
    with DiscoveryClient(*discovery_server.address, plain=True) as other:
        assert {u.nick for u in other.list_users()} == {"alice", "bob", "carl"}


# --- the pure and threaded parts, without a display -----------------------------------------


def test_keeper_lists_refreshes_counts_failures_and_stops() -> None:
    events: list[object] = []
    refreshed: list[Registration] = []
    calls = 0

    def lister(server: tuple[str, int]) -> list[UserRow]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DiscoveryError("down for a moment")
        return [UserRow("bob", "10.0.0.2", 4000, True, 3.0)]

    reg = Registration(("127.0.0.1", 1), "alice", "pw", "10.0.0.1", 5000, ("V0", "V2435"), None)
    keeper = PresenceKeeper(
        ("127.0.0.1", 1), reg, events.append, lister=lister, refresher=refreshed.append,
        list_interval=0.05, refresh_interval=0.2,
    )  # fmt: skip
    keeper.start()
    deadline = time.monotonic() + 10
    while (keeper.lists < 3 or not refreshed) and time.monotonic() < deadline:
        time.sleep(0.01)
    keeper.stop()
    assert keeper.lists >= 3 and keeper.failures >= 1 and refreshed[0] is reg
    assert all(isinstance(e, UsersListed) and e.users[0].online for e in events)
    count = len(events)
    time.sleep(0.15)
    assert len(events) == count  # stopped: nothing more


def test_the_list_interval_grows_with_the_list_and_pauses() -> None:
    assert [list_interval(n) for n in (0, 10, 1000, 2000, 10_000, 10**6)] == [
        3.0, 3.0, 3.0, 6.0, 30.0, MAX_LIST_INTERVAL,
    ]  # fmt: skip
    rows = [UserRow(f"u{i}", "10.0.0.2", 4000, None, None) for i in range(5000)]
    keeper = PresenceKeeper(
        ("127.0.0.1", 1), None, lambda e: None, lister=lambda s: rows, list_interval=0.02,
        paused=frozenset({"hidden"}),
    )  # fmt: skip
    keeper.start()
    try:
        time.sleep(0.15)
        assert keeper.lists == 0 and keeper.paused  # paused from the start
        keeper.pause("call", True)
        keeper.pause("hidden", False)
        time.sleep(0.15)
        assert keeper.lists == 0  # one reason is left
        keeper.pause("call", False)
        deadline = time.monotonic() + 5
        while keeper.lists < 1:
            assert time.monotonic() < deadline, "no list once unpaused"
            time.sleep(0.005)
        assert keeper.list_interval == pytest.approx(0.1)  # 5,000 users: 5 x the base
    finally:
        keeper.stop()


def test_the_worker_pauses_the_list_during_a_call_and_while_hidden() -> None:
    """The worker's side with test_worker's fake manager (no network): the reasons to pause
    reach the login's keeper, and the next login's."""
    managers: list[FakeManager] = []

    def factory(**kwargs: object) -> FakeManager:
        managers.append(FakeManager(**kwargs))
        return managers[-1]

    FakeManager.fail_start = None
    worker = ClientWorker(Config(), manager_factory=factory, lister=lambda s: [])
    worker.start()
    try:
        worker.set_window_shown(False)  # before the login: the keeper starts paused
        worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
        wait_for(worker, ev.UsersListed)
        deadline = time.monotonic() + 5
        while (keeper := worker._keeper) is None:  # made just after the first list
            assert time.monotonic() < deadline, "no presence keeper"
            time.sleep(0.01)
        assert keeper.paused
        worker.set_window_shown(True)
        assert not keeper.paused
        manager = managers[0]
        manager.media = media = FakeMedia()
        manager.on_event(ce.CallStarted("bob", "rtp", "H264", "127.0.0.1", 1, 2, True, "caller"))
        seen = wait_for(worker, ev.Connected)
        os.close(next(e for e in seen if isinstance(e, ev.MediaAttached)).notify_fd)
        assert keeper.paused
        worker.set_window_shown(False)
        worker.set_window_shown(True)
        assert keeper.paused  # still in the call
        manager.on_event(ce.CallEnded("bob", "peer_hangup"))
        wait_for(worker, ev.Ended)
        assert not keeper.paused
        media.close()
    finally:
        worker.stop()


def test_words_and_registration() -> None:
    assert [seen_text(a) for a in (None, 2, 42, 300, 7200, 3 * 86400)] == [
        "unknown", "just now", "42 s ago", "5 min ago", "2 h ago", "3 days ago",
    ]  # fmt: skip
    assert seen_text(float("nan")) == "unknown"
    assert [status_text(v) for v in (True, False, None)] == ["online", "offline", "unknown"]
    assert differs_only_in_case("Alice", "alice") and not differs_only_in_case("alice", "alice")
    assert not differs_only_in_case("alice", None) and not differs_only_in_case("al", "bo")

    class Manager:
        registered_ip = "10.0.0.1"
        registered_port = 5000
        protocols = ("V0", "V2435")

    reg = registration_of(Manager(), "alice", "pw", ("h", 1))
    assert reg == Registration(("h", 1), "alice", "pw", "10.0.0.1", 5000, ("V0", "V2435"), None)
    assert registration_of(object(), "alice", "pw", ("h", 1)) is None
