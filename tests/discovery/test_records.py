"""Records read back from a shared store: validated like peer input (records.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcall.discovery.records import FIELDS, RecordError, decode_user, encode_user
from vcall.discovery.store import Credential, StoredUser

nicks = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
protocols = st.lists(st.integers(0, 10**9 - 1).map(lambda n: f"V{n}"), min_size=1, max_size=32)
credentials = st.builds(
    Credential,
    st.binary(min_size=8, max_size=64),
    st.integers(1, 20).map(lambda e: 1 << e),
    st.integers(1, 32),
    st.integers(1, 16),
    st.binary(min_size=32, max_size=32),
)
users = st.builds(
    StoredUser,
    nicks,
    ips,
    st.integers(1, 65535),
    protocols.map(tuple),
    st.floats(min_value=0, max_value=1e12, allow_nan=False),
    credentials,
)


@given(users)
def test_round_trip(user: StoredUser) -> None:
    assert decode_user(user.nick, encode_user(user)) == user
    assert decode_user(user.nick.encode(), encode_user(user)) == user


field_values = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"1", b"0", b"65536", b"1e999", b"9e999", b"\xc2\xb2", b"V0", b"-1",
                     b"1024", b"10.0.0.1", b"x" * 600, b"16", b"nan", b"inf"]),
)  # fmt: skip


@given(
    st.one_of(st.binary(max_size=40), nicks.map(str.encode)),
    st.dictionaries(st.sampled_from(FIELDS), field_values),
)
def test_any_bytes_raise_only_record_error(nick: bytes, fields: dict[bytes, bytes]) -> None:
    try:
        user = decode_user(nick, fields)
    except RecordError:
        return
    # Whatever passed is something the server would have accepted from a REGISTER.
    assert user.credential.n <= 1 << 20 and len(user.credential.digest) == 32
    assert 1 <= user.port <= 65535


@given(users, st.sampled_from(FIELDS), field_values)
def test_one_corrupted_field(user: StoredUser, name: bytes, value: bytes) -> None:
    fields = encode_user(user) | {name: value}
    with contextlib.suppress(RecordError):
        decoded = decode_user(user.nick, fields)
        assert decoded.nick == user.nick


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"n", str(1 << 24).encode()),  # 16 GiB of scrypt at r=8
        (b"n", b"1000"),  # not a power of two (RFC 7914)
        (b"r", b"0"),
        (b"port", b"0"),
        (b"port", b"\xc2\xb2"),
        (b"ip", b"not-an-ip"),
        (b"protocols", b"v0"),
        (b"ts", b"9e999"),
        (b"ts", b"-1"),
        (b"digest", b"short"),
        (b"salt", b"s"),
    ],
)
def test_bad_fields_are_refused(name: bytes, value: bytes) -> None:
    cred = Credential(b"s" * 16, 1024, 8, 1, b"d" * 32)
    fields = encode_user(StoredUser("a", "10.0.0.1", 80, ("V0",), 1.0, cred)) | {name: value}
    with pytest.raises(RecordError):
        decode_user("a", fields)
    fields.pop(name)
    with pytest.raises(RecordError, match="missing"):
        decode_user("a", fields)
