"""Property tests against the real server: any bytes, in any split, never stall it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process

# Every server process and load generator a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")

GAP = 0.05


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[DiscoveryProcess]:
    args = ["--scrypt-n", "1024", "--gap-timeout", str(GAP), "--request-timeout", "2"]
    if request.param == "redis":
        args += ["--store", request.getfixturevalue("redis_module").url]
    proc = start_discovery_process(tmp_path_factory.mktemp("prop"), args)
    yield proc
    assert proc.stop() == 0


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    deadline = time.monotonic() + timeout
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


# Bytes biased towards the grammar, so that splits hit interesting places.
pieces = st.one_of(
    st.binary(min_size=1, max_size=30),
    st.sampled_from(
        [b"REGISTER ", b"QUERY ", b"LIST_USERS", b"QUIT", b" ", b"\r\n", b"\n", b"#", b"V0",
         b"alice", b"10.0.0.1", b"8000", b"\xc3", b"\xff", b"\x00"]
    ),
)  # fmt: skip


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(pieces, max_size=10))
def test_any_bytes_any_split_get_replies_or_a_clean_close(
    server: DiscoveryProcess, chunks: list[bytes]
) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            time.sleep(2 * GAP)  # let the server judge whatever is unfinished
            # Then a well-formed QUIT on a line of its own must end the conversation.
            sock.sendall(b"\nQUIT\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server dropped us (too many errors): a clean close
        data, closed = read_until_closed(sock, timeout=5)
    assert closed, f"server neither closed nor answered QUIT; got {data[:200]!r}"
    if data and not data.endswith(b"BYE"):
        assert data.endswith((b"NOK SYNTAX_ERROR", b"NOK UNKNOWN_COMMAND")), data[-100:]
    # And the server is still there for everyone else.
    with socket.create_connection(server.address, timeout=5) as probe:
        probe.sendall(b"QUERY nobody")
        probe.settimeout(5)
        assert probe.recv(100) == b"NOK USER_UNKNOWN"
