"""The synchronous client against scripted servers (lax, slow, broken) on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.discovery import free_port
from vcall.discovery.client import (
    DiscoveryClient,
    DiscoveryTimeout,
    ProtocolError,
    RequestRejected,
    ServerUnreachable,
    UserEntry,
    UserRecord,
    UserUnknown,
    WrongPassword,
)

Handler = Callable[[socket.socket], None]


class ScriptedServer:
    """Accepts connections on loopback and runs ``handler`` on each, in a thread."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = False
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.05)  # closing does not wake accept(): poll the flag
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self._handler(conn)

    def close(self) -> None:
        self._stopping = True
        self._thread.join(10)
        self._listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(handler: Handler) -> ScriptedServer:
        servers.append(ScriptedServer(handler))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def replies(*writes: bytes | float) -> Handler:
    """Answer the first request with these writes (floats are pauses), then wait for EOF."""

    def handler(conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.recv(4096)
        for w in writes:
            if isinstance(w, float):
                time.sleep(w)
            else:
                conn.sendall(w)
        while conn.recv(4096):
            pass

    return handler


def test_users_list_from_a_lax_server_in_several_reads(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(
        replies(
            b"OK USERS_LIST 3 a#b 10.0.0.1 8000.0 1700000000.5#c 10.0",
            0.05,
            b".0.2 9000 1700000001#d 10.0.0.3 ",
            0.05,
            b"1 17#",
        )
    )
    with DiscoveryClient(*server.address) as client:
        assert client.list_users() == [
            UserEntry("a#b", "10.0.0.1", 8000, 1700000000.5),
            UserEntry("c", "10.0.0.2", 9000, 1700000001.0),
            UserEntry("d", "10.0.0.3", 1, 17.0),
        ]


def test_list_split_on_an_entry_boundary_waits_for_the_rest(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(replies(b"OK USERS_LIST 2 a 1.1.1.1 1 1#", 0.1, b"b 2.2.2.2 2 2#"))
    with DiscoveryClient(*server.address) as client:
        assert [e.nick for e in client.list_users()] == ["a", "b"]


def test_user_found_with_a_float_port(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(replies(b"OK USER_FOUND bob 192.168.1.2 8000.0 V0#V1"))
    with DiscoveryClient(*server.address) as client:
        assert client.query("bob") == UserRecord("bob", "192.168.1.2", 8000, ("V0", "V1"))


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"NOK WRONG_PASS", WrongPassword),
        (b"NOK USER_UNKNOWN", UserUnknown),
        (b"NOK SYNTAX_ERROR", RequestRejected),
        (b"NOK UNKNOWN_COMMAND", RequestRejected),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", ProtocolError),
        (b"OK USER_FOUND bob 1.2.3.4 port V0", ProtocolError),
    ],
)
def test_typed_errors(
    scripted: Callable[..., ScriptedServer], reply: bytes, error: type[Exception]
) -> None:
    server = scripted(replies(reply))
    with DiscoveryClient(*server.address, timeout=2) as client, pytest.raises(error):
        client.query("bob")


def test_silent_server_times_out(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(replies(1.5))
    client = DiscoveryClient(*server.address, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(DiscoveryTimeout):
        client.list_users()
    assert time.monotonic() - start < 2.0
    client.close()


def test_server_that_hangs_up_without_replying(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda conn: None)
    with DiscoveryClient(*server.address) as client, pytest.raises(ServerUnreachable):
        client.query("bob")


def test_nothing_listening_names_the_address() -> None:
    port = free_port()
    with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}"):
        DiscoveryClient("127.0.0.1", port, timeout=1).query("bob")


def test_local_misuse_is_a_value_error_before_any_io() -> None:
    client = DiscoveryClient("127.0.0.1", free_port(), timeout=1)
    with pytest.raises(ValueError):
        client.query("no spaces allowed")
    with pytest.raises(ValueError):
        client.register("ok", "10.0.0.1", 8000, "has space", ["V0"])
    with pytest.raises(ValueError):
        client.register("ok", "10.0.0.1", 8000, "pw", ["H264"])


def test_close_sends_quit_and_is_idempotent(scripted: Callable[..., ScriptedServer]) -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.recv(4096)
        conn.sendall(b"NOK USER_UNKNOWN")
        seen.append(conn.recv(4096))
        conn.sendall(b"BYE")

    server = scripted(handler)
    client = DiscoveryClient(*server.address)
    with pytest.raises(UserUnknown):
        client.query("x")
    client.close()
    client.close()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [b"QUIT"]


def test_a_slow_split_reply_is_waited_for(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(replies(b"OK USER_FOUND bob 192.168.1.2", 0.5, b" 8000 V0"))
    with DiscoveryClient(*server.address, timeout=3) as client:
        assert client.query("bob") == UserRecord("bob", "192.168.1.2", 8000, ("V0",))


def test_a_truncated_reply_then_eof_is_a_protocol_error(
    scripted: Callable[..., ScriptedServer],
) -> None:
    def handler(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"OK USER_FOUND bob")

    server = scripted(handler)
    with DiscoveryClient(*server.address, timeout=3) as client, pytest.raises(ProtocolError):
        client.query("bob")


def test_a_truncated_reply_that_never_ends_times_out(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(replies(b"OK USERS_LIST 2 a 1.1.1.1 1 1", 1.0))
    with (
        DiscoveryClient(*server.address, timeout=0.5) as client,
        pytest.raises(DiscoveryTimeout),
    ):
        client.list_users()


def test_an_endless_reply_is_cut_at_the_size_cap(
    scripted: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vcall.discovery.client as client_module

    monkeypatch.setattr(client_module, "MAX_REPLY", 64 << 10)
    entry = b"nick 10.0.0.1 8000 1700000000.0#"

    def flood(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"OK USERS_LIST 999999999 ")
        with contextlib.suppress(OSError):
            for _ in range(100_000):  # ~3 MB, far over the cap, well within the timeout
                conn.sendall(entry * 32)

    server = scripted(flood)
    with (
        DiscoveryClient(*server.address, timeout=10) as client,
        pytest.raises(ProtocolError, match="over 65536 bytes"),
    ):
        client.list_users()


@pytest.mark.parametrize(
    "reply",
    [
        b"OK USERS_LIST \xc2\xb2",  # issue 15, fault 5: "\u00b2".isdigit(), int() refuses it
        "OK USERS_LIST 1 a 1.2.3.4 8\u00b3 17#".encode(),
        "OK USERS_LIST \u0661 a 1.2.3.4 80 17#".encode(),  # ARABIC-INDIC DIGIT ONE
    ],
)
def test_unicode_digits_in_a_reply_are_a_protocol_error(
    scripted: Callable[..., ScriptedServer], reply: bytes
) -> None:
    server = scripted(replies(reply))
    with DiscoveryClient(*server.address, timeout=2) as client, pytest.raises(ProtocolError):
        client.list_users()
